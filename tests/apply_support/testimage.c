/* The apply tests' container image: one static binary, its behaviour chosen by argv[0]
 * (busybox style), so faults are plain command and healthcheck settings in fleet.toml.
 *   serve       run until SIGTERM (exit 0)
 *   healthy     exit 0 (healthcheck that passes)
 *   unhealthy   exit 1 (healthcheck that never passes)
 *   exit-now    exit 1 at once
 *   crash-after run for 0.5 s, then exit 1
 */
#include <signal.h>
#include <string.h>
#include <unistd.h>

static void on_term(int sig) { (void)sig; _exit(0); }

int main(int argc, char **argv) {
    (void)argc;
    const char *name = strrchr(argv[0], '/');
    name = name ? name + 1 : argv[0];
    if (!strcmp(name, "healthy")) return 0;
    if (!strcmp(name, "unhealthy")) return 1;
    if (!strcmp(name, "exit-now")) return 1;
    if (!strcmp(name, "crash-after")) { usleep(500000); return 1; }
    signal(SIGTERM, on_term);
    signal(SIGINT, on_term);
    for (;;) pause();
}
