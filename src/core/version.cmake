# Writes DST from SRC with the current git hash, at build time, so the binary's hash follows new commits.
# configure_file leaves DST untouched when nothing changed, so this triggers no rebuild by itself.
execute_process(COMMAND git rev-parse --short HEAD WORKING_DIRECTORY ${SOURCE_DIR}
                OUTPUT_VARIABLE METAFEW_GIT_HASH OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
if(NOT METAFEW_GIT_HASH)
  set(METAFEW_GIT_HASH "unknown")
endif()
configure_file(${SRC} ${DST} @ONLY)
