// host.js — the test app's host functions (host.c says what each does). Test-only.
export function idle(callback) @ "xs_mcsim_host_idle";
export function getenv(name) @ "xs_mcsim_host_getenv";
export function exit(status) @ "xs_mcsim_host_exit";
export function lineBuffered() @ "xs_mcsim_host_line_buffered";
export function version() @ "xs_mcsim_host_version";
