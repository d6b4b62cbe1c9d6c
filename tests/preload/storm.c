/* An allocation storm: OPS (argument) allocations of 16 B to 4 KiB, each
 * replacing one of 10,000 live objects. Prints its allocations per second
 * and a checksum that keeps the compiler from dropping the work. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define LIVE 10000

int main(int argc, char **argv) {
  long ops = argc > 1 ? atol(argv[1]) : 50000000;
  static char *live[LIVE];
  uint64_t x = 88172645463325252ull, sum = 0;
  struct timespec a, b;
  clock_gettime(CLOCK_MONOTONIC, &a);
  for (long i = 0; i < ops; i++) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    size_t slot = x % LIVE, size = 16 + (x >> 32) % 4081;
    free(live[slot]);
    live[slot] = malloc(size);
    live[slot][0] = (char)i;
    sum += (uintptr_t)live[slot] & 0xff;
  }
  clock_gettime(CLOCK_MONOTONIC, &b);
  double secs = (b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) / 1e9;
  printf("%.0f allocations/s checksum %llu\n", ops / secs, (unsigned long long)sum);
  return 0;
}
