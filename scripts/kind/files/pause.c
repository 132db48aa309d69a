/* pause for the pod sandbox, same behaviour as kubernetes/build/pause: sleep until TERM/INT, reap zombies. */
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/wait.h>
static void sigdown(int s) { (void)s; _exit(0); }
static void sigreap(int s) { (void)s; while (waitpid(-1, NULL, WNOHANG) > 0) {} }
int main(void) {
  struct sigaction a = {0};
  a.sa_handler = sigdown;
  sigaction(SIGINT, &a, 0);
  sigaction(SIGTERM, &a, 0);
  struct sigaction r = {0};
  r.sa_handler = sigreap;
  r.sa_flags = SA_NOCLDSTOP;
  sigaction(SIGCHLD, &r, 0);
  for (;;) pause();
}
