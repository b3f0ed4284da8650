/* capture/fuzz/fuzz_pprof_check.c: libFuzzer target for the pprof sanity
 * checker and type detection, which read bytes from untrusted targets. */
#include <stddef.h>
#include <stdint.h>

#include "capture/capture.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	enum cap_pprof_verdict v = cap_pprof_check(data, size);
	if (v > CAP_PPROF_NOT_PROFILE)
		__builtin_trap();
	enum ppop_ptype t;
	if (cap_pprof_detect_type(data, size, 1u << 20, &t) == 0 && (unsigned)t >= PPOP_PT__COUNT)
		__builtin_trap();
	return 0;
}
