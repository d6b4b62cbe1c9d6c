/* Forks N times while four threads allocate; every third child execs
 * /bin/true, one in three calls exit (running the destructors of every
 * library, the preload's among them) and the rest _exit. Every hundredth
 * fork the parent also starts and joins a thread that allocates, so that
 * threads come and go around the agent's. A child that hangs is killed
 * by its alarm. Prints "forks F hung H crashed C". */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
static volatile int stop;
static void *churn(void *arg) {
  (void)arg;
  while (!stop) {
    void *p[64];
    for (int i = 0; i < 64; i++) p[i] = malloc(16 + (rand() % 70000));
    for (int i = 0; i < 64; i++) free(p[i]);
  }
  return NULL;
}
static void *one_round(void *arg) {
  (void)arg;
  for (int i = 0; i < 1000; i++) free(malloc(16 + i * 64));
  return NULL;
}

int main(int argc, char **argv) {
  int n = argc > 1 ? atoi(argv[1]) : 1000;
  pthread_t t[4];
  for (int i = 0; i < 4; i++) pthread_create(&t[i], NULL, churn, NULL);
  int hung = 0, crashed = 0;
  for (int i = 0; i < n; i++) {
    if (i % 100 == 50) {
      pthread_t late;
      pthread_create(&late, NULL, one_round, NULL);
      pthread_join(late, NULL);
    }
    pid_t pid = fork();
    if (pid == 0) {
      alarm(20);
      if (i % 3 == 0) {
        execl("/bin/true", "true", (char *)NULL);
        _exit(127);
      }
      for (int j = 0; j < 100; j++) free(malloc(1 + j * 1000));
      if (i % 3 == 1) exit(0);
      char *s = strdup("child");
      free(s);
      _exit(0);
    }
    int status;
    waitpid(pid, &status, 0);
    if (WIFSIGNALED(status)) {
      if (WTERMSIG(status) == SIGALRM) hung++; else crashed++;
    } else if (WEXITSTATUS(status) != 0) {
      crashed++;
    }
  }
  stop = 1;
  for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
  printf("forks %d hung %d crashed %d\n", n, hung, crashed);
  return hung || crashed;
}
