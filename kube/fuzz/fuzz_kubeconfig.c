/* kube/fuzz/fuzz_kubeconfig.c: libFuzzer target for the kubeconfig loader.
 *
 * The input is one or two kubeconfig documents separated by a NUL byte,
 * merged as KUBECONFIG merges files. File references are refused (the
 * loader's allow_files=0), so the fuzzer never reads the disk; every other
 * path - YAML parsing, merging, base64, field validation, errors - runs.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kube/kube_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *names[2] = {"fuzz-a", "fuzz-b"};
	const char *bufs[2];
	size_t lens[2], n = 1;
	const uint8_t *nul = memchr(data, 0, size);
	struct kube_config *c = NULL;
	char err[512];

	bufs[0] = (const char *)data;
	lens[0] = size;
	if (nul) {
		lens[0] = (size_t)(nul - data);
		bufs[1] = (const char *)nul + 1;
		lens[1] = size - lens[0] - 1;
		n = 2;
	}
	if (kube__kubeconfig_parse(names, bufs, lens, n, NULL, 0, &c, err, sizeof(err)) == 0) {
		/* A loaded config must be usable. */
		if (!kube_config_server(c) || !kube_config_namespace(c))
			abort();
		kube_config_free(c);
	} else if (c) {
		abort();
	}
	return 0;
}
