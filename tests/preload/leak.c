/* A C program that leaks 64 KiB per iteration through one named
 * function, amid allocations that are freed: the subject of the preload
 * tests. Runs for the seconds given as its argument. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static void **kept;
static size_t nkept;

__attribute__((noinline)) void *leak_buffer(size_t n) {
  void *p = malloc(n);
  memset(p, 1, n);
  return p;
}

int main(int argc, char **argv) {
  time_t end = time(NULL) + (argc > 1 ? atoi(argv[1]) : 30);
  kept = calloc(1 << 20, sizeof(void *));
  while (time(NULL) < end && nkept < (1 << 20)) {
    kept[nkept++] = leak_buffer(64 << 10);
    for (int j = 0; j < 100; j++) {
      char *s = strdup("churn");
      free(s);
    }
    usleep(20000);
  }
  printf("leaked %zu buffers\n", nkept);
  return 0;
}
