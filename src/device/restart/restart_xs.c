/*
 * xs_device_restart: the device app's restart (src/device/restart/platform-restart.ts, the Restart port's
 * mechanism). Mechanism only: the OTA controller decides when (src/core/ota-controller.ts).
 *
 * ESP32: esp_restart(), a software reset; the bootloader then picks the app from otadata (and, with
 * rollback enabled, turns a NEW entry into PENDING_VERIFY or aborts an unconfirmed one).
 *
 * Linux simulator (mcsim, -p lin): the SDK's simulator has no restart (its System defines none, and the
 * Reload command only relaunches the app inside the same process, keeping everything a C module holds).
 * So this re-executes the simulator itself: the same binary (/proc/self/exe) with the same arguments
 * (/proc/self/cmdline) and environment, in the same process id, so a parent such as xsbug-log keeps
 * its child. Every file descriptor above stderr is marked close-on-exec first, so the MQTT and HTTPS
 * sockets, the xsbug connection and the flash file's descriptor close as a reset would drop them; the
 * flash file's shared mapping reaches the file through the page cache. The new process loads mc.so
 * again, opens the flash file and boots from its otadata, as the ESP32 boots from flash. If exec fails,
 * nothing was closed and a JavaScript Error says why.
 */
#include "xsmc.h"

#ifdef ESP_PLATFORM

#include "esp_system.h"

void xs_device_restart(xsMachine *the)
{
    esp_restart();
}

#else

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define RESTART_MAX_ARGS 64
#define RESTART_CMDLINE_MAX 8192

void xs_device_restart(xsMachine *the)
{
    static char cmdline[RESTART_CMDLINE_MAX + 1];
    char *argv[RESTART_MAX_ARGS + 1];
    int argc = 0;
    ssize_t length = 0;
    int fd = open("/proc/self/cmdline", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        xsUnknownError("restart: /proc/self/cmdline: %s", strerror(errno));
    for (;;) {
        ssize_t n = read(fd, cmdline + length, RESTART_CMDLINE_MAX - length);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        length += n;
        if (length == RESTART_CMDLINE_MAX)
            break;
    }
    close(fd);
    if (length <= 0 || length == RESTART_CMDLINE_MAX)
        xsUnknownError("restart: cannot read the command line (%d bytes)", (int)length);
    cmdline[length] = 0;
    for (char *p = cmdline; p < cmdline + length && argc < RESTART_MAX_ARGS; p += strlen(p) + 1)
        argv[argc++] = p;
    argv[argc] = NULL;

    long max = sysconf(_SC_OPEN_MAX);
    if (max < 0 || max > 65536)
        max = 65536;
    for (int i = 3; i < max; i++) {
        int flags = fcntl(i, F_GETFD);
        if (flags >= 0)
            fcntl(i, F_SETFD, flags | FD_CLOEXEC);
    }
    fflush(NULL);
    execv("/proc/self/exe", argv);
    xsUnknownError("restart: exec %s: %s", argv[0], strerror(errno));
}

#endif
