/*
 * ca-check: the `cdn-node ca-check` subcommand (lib/certcheck on the command line).
 */
#ifndef CDN_CMD_CA_CHECK_H
#define CDN_CMD_CA_CHECK_H

/* `ca-check [--warn-days N] [--leaf client|server] FILE...`; argv[0] is "ca-check". Prints one
 * verdict line per certificate and a summary on stdout. Returns the exit status: 0 when no file
 * has an error (warnings allowed), 1 when one has, 2 on a usage error or an unreadable file. */
int cmd_ca_check(int argc, char **argv);

#endif
