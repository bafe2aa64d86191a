/*
 * config_fuzzer: the config file reader (comments, trailing commas, JSON)
 * and the whole build (every setting's validation, users, rules, the
 * compiled policy and `config show`) over arbitrary bytes as the file.
 */
#include "tailfence/config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* No variables but a socket, so the build does not depend on the host. */
static const char *fuzz_env(void *arg, const char *name)
{
	(void)arg;
	return strcmp(name, "TAILSCALE_SOCKET") == 0 ? "none" : NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[1024];
	struct config_input in = {
		.file_name = "fuzz.json", .file_text = (const char *)data, .file_len = size,
		.getenv = fuzz_env,
	};
	struct config *c = config_build_from(&in, NULL, err, sizeof err);
	if (c) {
		char *shown = config_show_json(c, false);
		/* what config show prints must build again */
		if (shown) {
			struct config_input again = { .file_name = "shown.json", .file_text = shown,
						      .file_len = strlen(shown), .getenv = fuzz_env };
			struct config *c2 = config_build_from(&again, NULL, err, sizeof err);
			if (!c2)
				abort();
			config_unref(c2);
		}
		free(shown);
	}
	config_unref(c);
	return 0;
}
