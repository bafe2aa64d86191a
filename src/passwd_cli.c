/*
 * passwd_cli: tailfence passwd. Reads a password from the terminal (twice,
 * without echo) or the first line of stdin, and prints its hash for the
 * config's "users" object. The password is wiped once hashed.
 */
#include "tailfence/auth.h"
#include "tailfence/cli.h"

#include <openssl/crypto.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

/* Reads one line into buf without the newline; false at EOF. */
static bool read_line(FILE *f, char *buf, size_t len)
{
	if (!fgets(buf, (int)len, f))
		return false;
	size_t n = strlen(buf);
	while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
		buf[--n] = '\0';
	return true;
}

static bool read_secret(const char *prompt, char *buf, size_t len)
{
	struct termios old, noecho;
	if (tcgetattr(STDIN_FILENO, &old) != 0)
		return false;
	noecho = old;
	noecho.c_lflag &= (tcflag_t)~ECHO;
	noecho.c_lflag |= ECHONL;
	fputs(prompt, stderr);
	fflush(stderr);
	tcsetattr(STDIN_FILENO, TCSAFLUSH, &noecho);
	bool ok = read_line(stdin, buf, len);
	tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
	return ok;
}

int passwd_cli_main(int argc, char **argv)
{
	char pw[1024], again[1024], hash[AUTH_HASH_STRLEN];
	int rc = 1;

	if (argc > 1) {
		if (strcmp(argv[1], "--help") == 0) {
			printf("usage: tailfence passwd\n"
			       "Reads a password from the terminal (twice, without echo) or the first\n"
			       "line of stdin, and prints its scrypt hash for the \"users\" object.\n");
			return 0;
		}
		fprintf(stderr, "usage: tailfence passwd   (no arguments)\n");
		return 2;
	}
	if (isatty(STDIN_FILENO)) {
		if (!read_secret("Password: ", pw, sizeof pw) ||
		    !read_secret("Again: ", again, sizeof again)) {
			fprintf(stderr, "tailfence passwd: no password read\n");
			goto out;
		}
		if (strcmp(pw, again) != 0) {
			fprintf(stderr, "tailfence passwd: the passwords differ\n");
			goto out;
		}
	} else if (!read_line(stdin, pw, sizeof pw)) {
		fprintf(stderr, "tailfence passwd: no password on stdin\n");
		goto out;
	}
	if (pw[0] == '\0') {
		fprintf(stderr, "tailfence passwd: the password is empty\n");
		goto out;
	}
	if (!auth_hash_password(pw, strlen(pw), hash, sizeof hash)) {
		fprintf(stderr, "tailfence passwd: hashing failed\n");
		goto out;
	}
	printf("%s\n", hash);
	rc = 0;
out:
	OPENSSL_cleanse(pw, sizeof pw);
	OPENSSL_cleanse(again, sizeof again);
	return rc;
}
