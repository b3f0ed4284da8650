/* capture/fuzz/fuzz_pprof_check.c: libFuzzer target for the pprof sanity
 * checker and type detection, which read bytes from untrusted targets. One
 * checker lives for the whole run, as the fetcher's does: whatever an
 * earlier input left in its inflate state must not change a verdict. */
#include <stddef.h>
#include <stdint.h>

#include "capture/capture.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct cap_pprof_checker *checker;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	enum cap_pprof_verdict v = cap_pprof_check(data, size);
	if (v > CAP_PPROF_NOT_PROFILE)
		__builtin_trap();
	if (checker == NULL && cap_pprof_checker_new(&checker) < 0)
		__builtin_trap();
	if (cap_pprof_checker_run(checker, data, size) != v)
		__builtin_trap();
	enum ppop_ptype t;
	if (cap_pprof_detect_type(data, size, 1u << 20, &t) == 0 && (unsigned)t >= PPOP_PT__COUNT)
		__builtin_trap();
	return 0;
}
