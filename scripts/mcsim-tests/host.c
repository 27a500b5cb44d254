/*
 * host.c — the three host functions the generated test app of scripts/test-mcsim.mjs needs from the
 * Moddable simulator on Linux (mcsim), which its JavaScript modules cannot do themselves:
 *
 * - xs_mcsim_host_idle(callback): calls `callback` once, from a GLib idle source of G_PRIORITY_DEFAULT_IDLE,
 *   i.e. only when no source of a higher priority is ready. XS on lin runs promise jobs from an idle source
 *   of G_PRIORITY_DEFAULT (xs/platforms/lin_xs.c, fxQueuePromiseJobs) and `Timer` uses G_PRIORITY_DEFAULT
 *   (G_PRIORITY_HIGH for 0 ms) (modules/base/timer/lin/timer.c), so the callback runs after the job queue is
 *   empty — xsnap's `setImmediate` — and not after a fixed wall-clock delay. The test app's setImmediate is
 *   built on it. One callback per machine (the first one given); calls before it has run add nothing.
 * - xs_mcsim_host_getenv(name): the environment variable, or undefined (which test file to run).
 * - xs_mcsim_host_exit(status): flushes stdout and ends the simulator with `status` once a file has run.
 *
 * xs_mcsim_host_version() returns the XS version the app was built with ("17.x.y", from version.c).
 *
 * xs_mcsim_host_line_buffered() makes stdout line buffered: a release build's `trace` is printf
 * (xs/sources/xsDebug.c, fxReport), and a pipe is fully buffered, so without it a crash would lose the
 * lines that say where it happened.
 *
 * Test-only: compiled into build/mcsim-tests/app, never into the device build.
 */
#include "xs.h"
#include <glib.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

extern const char* mcsimXsVersion(void); /* version.c */

static xsMachine* gMachine = NULL;
static xsSlot gCallback;
static guint gSource = 0;

static gboolean idleCallback(gpointer data)
{
	xsMachine* the = gMachine;
	(void)data;
	gSource = 0;
	xsBeginHost(the);
	{
		xsCallFunction0(gCallback, xsGlobal);
	}
	xsEndHost(the);
	return G_SOURCE_REMOVE;
}

void xs_mcsim_host_idle(xsMachine* the)
{
	if (!xsIsInstanceOf(xsArg(0), xsFunctionPrototype))
		xsTypeError("idle: callback must be a function");
	if (gMachine == NULL) {
		gMachine = the;
		gCallback = xsArg(0);
		xsRemember(gCallback);
	}
	if (gSource == 0)
		gSource = g_idle_add_full(G_PRIORITY_DEFAULT_IDLE, idleCallback, NULL, NULL);
}

void xs_mcsim_host_getenv(xsMachine* the)
{
	const char* value = getenv(xsToString(xsArg(0)));
	if (value != NULL)
		xsResult = xsString(value);
}

void xs_mcsim_host_exit(xsMachine* the)
{
	int status = xsToInteger(xsArg(0));
	fflush(stdout);
	fflush(stderr);
	_exit(status);
}

void xs_mcsim_host_line_buffered(xsMachine* the)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
}

void xs_mcsim_host_version(xsMachine* the)
{
	xsResult = xsString(mcsimXsVersion());
}
