/*
 * reload: the `cdn-node reload` subcommand: asks a running node to reload its configuration and
 * reports the verdict.
 */
#ifndef CDN_CMD_RELOAD_H
#define CDN_CMD_RELOAD_H

/* `reload --config FILE [--ports-file FILE] [--pid-file FILE] [--timeout SECONDS]`; argv[0] is
 * "reload". With a plain admin listener in FILE: POST /reload, then poll /stats until the reload
 * counters move; prints the new generation or the reason of the refusal. Otherwise sends SIGHUP to
 * the pid in --pid-file. Exit status: 0 reloaded (or signalled), 1 refused or no answer, 2 usage. */
int cmd_reload(int argc, char **argv);

#endif
