/**
 * The Linux capability names Docker knows (without their CAP_ prefix), as of Linux 5.9:
 * a --cap-drop outside them is refused by Docker only when a container is created, failing
 * every task of the worker.
 */
const LINUX_CAPABILITIES = new Set([
  "CHOWN",
  "DAC_OVERRIDE",
  "DAC_READ_SEARCH",
  "FOWNER",
  "FSETID",
  "KILL",
  "SETGID",
  "SETUID",
  "SETPCAP",
  "LINUX_IMMUTABLE",
  "NET_BIND_SERVICE",
  "NET_BROADCAST",
  "NET_ADMIN",
  "NET_RAW",
  "IPC_LOCK",
  "IPC_OWNER",
  "SYS_MODULE",
  "SYS_RAWIO",
  "SYS_CHROOT",
  "SYS_PTRACE",
  "SYS_PACCT",
  "SYS_ADMIN",
  "SYS_BOOT",
  "SYS_NICE",
  "SYS_RESOURCE",
  "SYS_TIME",
  "SYS_TTY_CONFIG",
  "MKNOD",
  "LEASE",
  "AUDIT_WRITE",
  "AUDIT_CONTROL",
  "SETFCAP",
  "MAC_OVERRIDE",
  "MAC_ADMIN",
  "SYSLOG",
  "WAKE_ALARM",
  "BLOCK_SUSPEND",
  "AUDIT_READ",
  "PERFMON",
  "BPF",
  "CHECKPOINT_RESTORE",
]);

/**
 * Parses a capability to drop as Docker reads one: a Linux capability name in any case, with
 * or without CAP_ ("net_raw", "CAP_NET_RAW"), or ALL; `none` too when `none` is given (the
 * worker's --cap-drop none keeps all). Returns it in capitals as given; throws a message
 * naming it otherwise.
 */
export function parseCapability(input: string, none = false): string {
  const name = input.trim().toUpperCase();
  if (name === "ALL" || (none && name === "NONE")) return name;
  if (LINUX_CAPABILITIES.has(name.replace(/^CAP_/, ""))) return name;
  throw new Error(
    `"${input}" is not a Linux capability: use a name such as NET_RAW or SYS_ADMIN (CAP_ optional, any case), or ALL${none ? ", or none" : ""}`,
  );
}
