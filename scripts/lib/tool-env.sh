# Sourced by the scripts that build or run third-party tools (Kubernetes' Makefiles, go, etcd,
# kube-apiserver, apt-get, PostgreSQL). A test process carries cargo's environment — OUT_DIR of
# a build script, CARGO_*, RUSTFLAGS, TARGET, HOST, PROFILE, DEBUG — and some of those names mean
# something else to other tools: Kubernetes' Makefile takes OUT_DIR as its own output directory.
# So such a script runs itself again from an empty environment plus an explicit list of what
# tools may see, and everything it starts inherits only that.

# Variables a tool may inherit: where programs and home are, locale and time zone, proxies for
# package downloads, the temporary directory. The scripts' own knobs (CUTOVER_*) are kept too.
TOOL_ENV_KEEP=(PATH HOME USER LOGNAME TMPDIR LANG LC_ALL TZ TERM
  http_proxy https_proxy no_proxy HTTP_PROXY HTTPS_PROXY NO_PROXY)

# tool_env_reexec SCRIPT ARGS...: unless already clean, exec SCRIPT ARGS with only the kept
# variables. Call it first thing: `tool_env_reexec "$0" "$@"`.
tool_env_reexec() {
  [[ ${CUTOVER_TOOL_ENV:-} == clean ]] && return 0
  local inherit=() name
  for name in "${TOOL_ENV_KEEP[@]}"; do
    [[ -n ${!name+x} ]] && inherit+=("$name=${!name}")
  done
  while IFS= read -r name; do
    [[ $name == CUTOVER_* ]] && inherit+=("$name=${!name}")
  done < <(compgen -e)
  exec env -i "${inherit[@]}" CUTOVER_TOOL_ENV=clean "$@"
}
