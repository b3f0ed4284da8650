/* libFuzzer target: the listen-address parser behind
 * --metrics-bind-address and --health-probe-bind-address. Flags come from
 * the Deployment, but a typo must be refused, not overflow `host` or
 * `port`. An accepted address yields a NUL-terminated host and a port of
 * decimal digits no larger than 65535. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "operator/httpd.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char addr[512], host[64], port[8];
	unsigned long p;
	char *end;

	if (size >= sizeof(addr) || memchr(data, '\0', size))
		return 0;
	memcpy(addr, data, size);
	addr[size] = '\0';
	memset(host, 'x', sizeof(host));
	memset(port, 'x', sizeof(port));
	if (op_httpd_parse_addr(addr, host, sizeof(host), port, sizeof(port)) != 0)
		return 0;
	if (!memchr(host, '\0', sizeof(host)) || !memchr(port, '\0', sizeof(port)))
		abort();
	p = strtoul(port, &end, 10);
	if (port[0] < '0' || port[0] > '9' || *end != '\0' || p > 65535)
		abort();
	return 0;
}
