/*
 * dmtcp.h: the application and plugin interface of dmtcp-rs (libdmtcp.so).
 *
 * Source-compatible with DMTCP's header of the same name for the functions listed here: same
 * names, signatures, constants and event numbers, so C code written for DMTCP compiles
 * unchanged. See docs/plugins.md for the plugin side.
 *
 * Every function is declared weak and wrapped in a macro that tests its address: a program built
 * against this header runs without dmtcp_launch too (the calls then report DMTCP_NOT_PRESENT or
 * a neutral value). As with DMTCP, build such programs position-independent (-fPIC or -fPIE,
 * the default on most distributions), so the weak references are resolved at run time.
 *
 * Not provided (DMTCP has them): the coordinator key/value name service
 * (dmtcp_send_key_val_pair_to_coordinator, dmtcp_send_query_to_coordinator), barriers
 * (dmtcp_global_barrier, dmtcp_local_barrier), the unique-pid structs, protected-fd helpers, DmtcpMutex/DmtcpRWLock and the batch-queue hooks.
 */
#ifndef DMTCP_H
#define DMTCP_H

#include <dlfcn.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifndef RTLD_NEXT
/* glibc defines it only with _GNU_SOURCE; NEXT_FNC needs it. */
# define RTLD_NEXT ((void *) -1l)
#endif

#ifdef __cplusplus
# define EXTERNC extern "C"
extern "C" {
#else
# define EXTERNC
#endif

#define DMTCP_PLUGIN_API_VERSION "3"
#ifndef DMTCP_PACKAGE_VERSION
# define DMTCP_PACKAGE_VERSION "dmtcp-rs"
#endif

/* Return values of dmtcp_checkpoint() and of the status calls. */
#define DMTCP_AFTER_CHECKPOINT 1
#define DMTCP_AFTER_RESTART    2
#define DMTCP_NOT_PRESENT      3
#define DMTCP_IS_PRESENT       4

/* ---------------------------------------------------------------- application interface */

/* 1 under dmtcp_launch / dmtcp_restart, 0 otherwise. */
int dmtcp_is_enabled(void) __attribute__((weak));
#define dmtcp_is_enabled() (dmtcp_is_enabled ? dmtcp_is_enabled() : 0)

/* Checkpoint the whole computation; returns once this process has been checkpointed:
 * DMTCP_AFTER_CHECKPOINT in the running process, DMTCP_AFTER_RESTART when it resumes from that
 * image after a restart, <= 0 on failure (also when called inside a disable_ckpt window). */
int dmtcp_checkpoint(void) __attribute__((weak));
#define dmtcp_checkpoint() (dmtcp_checkpoint ? dmtcp_checkpoint() : DMTCP_NOT_PRESENT)

/* No checkpoint starts between dmtcp_disable_ckpt() and the matching dmtcp_enable_ckpt() (per
 * thread, nesting counts); one requested meanwhile starts when every window has closed.
 * Both return 1 on success. Safe to call from signal handlers. */
int dmtcp_disable_ckpt(void) __attribute__((weak));
#define dmtcp_disable_ckpt() (dmtcp_disable_ckpt ? dmtcp_disable_ckpt() : DMTCP_NOT_PRESENT)
int dmtcp_enable_ckpt(void) __attribute__((weak));
#define dmtcp_enable_ckpt() (dmtcp_enable_ckpt ? dmtcp_enable_ckpt() : DMTCP_NOT_PRESENT)

/* Processes connected to the coordinator and whether all are running (no checkpoint under
 * way). DMTCP_IS_PRESENT on success. */
int dmtcp_get_coordinator_status(int *numPeers, int *isRunning) __attribute__((weak));
#define dmtcp_get_coordinator_status(p, r) \
  (dmtcp_get_coordinator_status ? dmtcp_get_coordinator_status(p, r) : DMTCP_NOT_PRESENT)

/* Checkpoints of this process (restarts excluded) and restarts of it. DMTCP_IS_PRESENT. */
int dmtcp_get_local_status(int *numCheckpoints, int *numRestarts) __attribute__((weak));
#define dmtcp_get_local_status(c, r) \
  (dmtcp_get_local_status ? dmtcp_get_local_status(c, r) : DMTCP_NOT_PRESENT)

/* The computation's checkpoint generation: 0 before the first checkpoint. */
uint32_t dmtcp_get_generation(void) __attribute__((weak));
/* 1 while a checkpoint waits for windows to close or is under way. */
int checkpoint_is_pending(void) __attribute__((weak));
int dmtcp_is_running_state(void) __attribute__((weak));

/* Checkpoint directory of this process, and changing it for the next checkpoints. */
const char *dmtcp_get_ckpt_dir(void) __attribute__((weak));
#define dmtcp_get_ckpt_dir() (dmtcp_get_ckpt_dir ? dmtcp_get_ckpt_dir() : "")
int dmtcp_set_ckpt_dir(const char *dir) __attribute__((weak));
#define dmtcp_set_ckpt_dir(d) (dmtcp_set_ckpt_dir ? dmtcp_set_ckpt_dir(d) : DMTCP_NOT_PRESENT)

/* Path of this process's image (the last one written, or the next one). */
const char *dmtcp_get_ckpt_filename(void) __attribute__((weak));
#define dmtcp_get_ckpt_filename() (dmtcp_get_ckpt_filename ? dmtcp_get_ckpt_filename() : NULL)
const char *dmtcp_get_uniquepid_str(void) __attribute__((weak));
#define dmtcp_get_uniquepid_str() (dmtcp_get_uniquepid_str ? dmtcp_get_uniquepid_str() : NULL)

/* Pid virtualization: after a restart that could not give a process its old pid, the program
 * keeps seeing the old one (its virtual pid); these convert (pids and tids; unknown ones are
 * returned as they are). Without DMTCP both are the identity. */
#include <sys/types.h>
pid_t dmtcp_virtual_to_real_pid(pid_t pid) __attribute__((weak));
#define dmtcp_virtual_to_real_pid(p) (dmtcp_virtual_to_real_pid ? dmtcp_virtual_to_real_pid(p) : (p))
pid_t dmtcp_real_to_virtual_pid(pid_t pid) __attribute__((weak));
#define dmtcp_real_to_virtual_pid(p) (dmtcp_real_to_virtual_pid ? dmtcp_real_to_virtual_pid(p) : (p))

const char *dmtcp_get_tmpdir(void) __attribute__((weak));
const char *dmtcp_get_executable_path(void) __attribute__((weak));
int dmtcp_get_ckpt_signal(void) __attribute__((weak));
int dmtcp_no_coordinator(void) __attribute__((weak));
int dmtcp_should_ckpt_open_files(void) __attribute__((weak));
int dmtcp_allow_overwrite_with_ckpted_files(void) __attribute__((weak));

/* Value of `name` in dmtcp_restart's environment at the last restart. */
typedef enum eDmtcpGetRestartEnvErr {
  RESTART_ENV_SUCCESS = 0,
  RESTART_ENV_NOTFOUND = -1,
  RESTART_ENV_TOOLONG = -2,
  RESTART_ENV_DMTCP_BUF_TOO_SMALL = -3,
  RESTART_ENV_INTERNAL_ERROR = -4,
  RESTART_ENV_NULL_PTR = -5
} DmtcpGetRestartEnvErr_t;
int dmtcp_get_restart_env(const char *name, char *value, size_t maxvaluelen) __attribute__((weak));

/* ---------------------------------------------------------------- plugin interface */

/* DMTCP's event numbering. Delivered by dmtcp-rs: INIT, EXIT, PRESUSPEND, PRECHECKPOINT,
 * RESUME, RESTART, RUNNING (docs/plugins.md says when and on which thread). */
typedef enum eDmtcpEvent {
  DMTCP_EVENT_INIT,
  DMTCP_EVENT_EXIT,

  DMTCP_EVENT_PRE_EXEC,
  DMTCP_EVENT_POST_EXEC,

  DMTCP_EVENT_ATFORK_PREPARE,
  DMTCP_EVENT_ATFORK_PARENT,
  DMTCP_EVENT_ATFORK_CHILD,
  DMTCP_EVENT_ATFORK_FAILED,

  DMTCP_EVENT_VFORK_PREPARE,
  DMTCP_EVENT_VFORK_PARENT,
  DMTCP_EVENT_VFORK_CHILD,
  DMTCP_EVENT_VFORK_FAILED,

  DMTCP_EVENT_PTHREAD_START,
  DMTCP_EVENT_PTHREAD_EXIT,
  DMTCP_EVENT_PTHREAD_RETURN,

  DMTCP_EVENT_PRESUSPEND,
  DMTCP_EVENT_PRECHECKPOINT,
  DMTCP_EVENT_RESUME,
  DMTCP_EVENT_RESTART,
  DMTCP_EVENT_RUNNING,
  DMTCP_EVENT_THREAD_RESUME,

  DMTCP_EVENT_OPEN_FD,
  DMTCP_EVENT_REOPEN_FD,
  DMTCP_EVENT_CLOSE_FD,
  DMTCP_EVENT_DUP_FD,

  DMTCP_EVENT_VIRTUAL_TO_REAL_PATH,
  DMTCP_EVENT_REAL_TO_VIRTUAL_PATH,

  nDmtcpEvents
} DmtcpEvent_t;

/* Event data. Only resumeInfo.isRestart is filled in (RESUME: 0, RESTART: 1, RUNNING: either);
 * the other members exist so that DMTCP plugins compile. */
typedef union _DmtcpEventData_t {
  struct {
    int serializationFd;
    char *filename;
    size_t maxArgs;
    const char **argv;
    size_t maxEnv;
    const char **envp;
  } preExec;
  struct {
    int serializationFd;
  } postExec;
  struct {
    int isRestart;
  } resumeUserThreadInfo, nameserviceInfo, resumeInfo;
  struct {
    int fd;
    const char *path;
    int flags;
    mode_t mode;
  } openFd;
  struct {
    int fd;
    const char *path;
    int flags;
  } reopenFd;
  struct {
    int fd;
  } closeFd;
  struct {
    int oldFd;
    int newFd;
  } dupFd;
  struct {
    char *path;
  } realToVirtualPath, virtualToRealPath;
} DmtcpEventData_t;

typedef void (*HookFunctionPtr_t)(DmtcpEvent_t, DmtcpEventData_t *);

typedef struct {
  const char *pluginApiVersion;
  const char *dmtcpVersion;

  const char *pluginName;
  const char *authorName;
  const char *authorEmail;
  const char *description;

  void (*event_hook)(const DmtcpEvent_t event, DmtcpEventData_t *data);
} DmtcpPluginDescriptor_t;

/* Register a plugin (by value, as in DMTCP). Use DMTCP_DECL_PLUGIN rather than calling it. */
void dmtcp_register_plugin(DmtcpPluginDescriptor_t descr) __attribute__((weak));

/* Declare the plugin described by `descr` (a DmtcpPluginDescriptor_t variable): it registers
 * from a constructor when its library is loaded. Without libdmtcp.so it does nothing. */
#define DMTCP_DECL_PLUGIN(descr)                                          \
  __attribute__((constructor)) static void dmtcp_plugin_register_##descr(void) \
  {                                                                       \
    if (dmtcp_register_plugin) {                                          \
      dmtcp_register_plugin(descr);                                       \
    }                                                                     \
  }

/* Keep checkpoints out of a wrapper's body. */
int dmtcp_plugin_disable_ckpt(void) __attribute__((weak));
void dmtcp_plugin_enable_ckpt(void) __attribute__((weak));
#define DMTCP_PLUGIN_DISABLE_CKPT() \
  (dmtcp_plugin_disable_ckpt ? dmtcp_plugin_disable_ckpt() : 0)
#define DMTCP_PLUGIN_ENABLE_CKPT() \
  do { if (dmtcp_plugin_enable_ckpt) dmtcp_plugin_enable_ckpt(); } while (0)

/* The next definition of `func` after the calling library (libc's, or another plugin's),
 * looked up once: what a wrapper calls. */
#define NEXT_FNC(func)                                                    \
  ({                                                                      \
    static __typeof__(&func) _real_##func = NULL;                         \
    if (_real_##func == NULL) {                                           \
      _real_##func = (__typeof__(&func)) dlsym(RTLD_NEXT, #func);         \
    }                                                                     \
    _real_##func;                                                         \
  })

#ifdef __cplusplus
}
#endif

#endif /* DMTCP_H */
