/*
 * version.c — the XS version this app was compiled with, for scripts/test-mcsim.mjs to print. XS_MAJOR_VERSION
 * and its siblings live in xsCommon.h (through xsAll.h), which cannot be included next to xs.h, so host.c
 * asks this file. Test-only.
 */
#include "xsAll.h"
#include <stdio.h>

const char* mcsimXsVersion(void)
{
	static char buffer[32];
	snprintf(buffer, sizeof(buffer), "%d.%d.%d", XS_MAJOR_VERSION, XS_MINOR_VERSION, XS_PATCH_VERSION);
	return buffer;
}
