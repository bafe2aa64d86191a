/*
 * config_fuzzer: the config file reader (comments, trailing commas, JSON)
 * and the whole validation, over arbitrary bytes written to a temporary file.
 */
#include "tailfence/config.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char path[64];
	char err[1024];

	cJSON *j = config_parse_json("fuzz", (const char *)data, size, err, sizeof err);
	cJSON_Delete(j);
	if (!path[0]) {
		snprintf(path, sizeof path, "/tmp/tailfence-config-fuzz-%d.json", (int)getpid());
		unsetenv("TAILSCALE_ADVERTISE_ROUTES");
		unsetenv("TAILFENCE_CONFIG");
	}
	FILE *f = fopen(path, "wb");
	if (!f)
		return 0;
	fwrite(data, 1, size, f);
	fclose(f);
	char *argv[] = { "tailfence", "--config", path, NULL };
	struct config_args *a = NULL;
	if (config_args_parse(3, argv, &a) != 0)
		return 0;
	struct config *c = config_build(a, err, sizeof err);
	config_unref(c);
	config_args_free(a);
	return 0;
}
