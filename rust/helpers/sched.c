// SPDX-License-Identifier: GPL-2.0

#include <linux/sched.h>
#include <linux/sched/signal.h>
#include <linux/compat.h>
#include <linux/audit.h>
#include <trace/events/sched.h>

__rust_helper bool rust_helper_task_is_runnable(struct task_struct *p)
{
	return task_is_runnable(p);
}

__rust_helper void rust_helper_set_notify_signal(struct task_struct *task)
{
	set_notify_signal(task);
}

__rust_helper void rust_helper_set_current_state(unsigned int state)
{
	set_current_state(state);
}

__rust_helper void rust_helper___set_current_state(unsigned int state)
{
	__set_current_state(state);
}

__rust_helper void rust_helper_clear_notify_signal(void)
{
	clear_notify_signal();
}

__rust_helper int rust_helper_task_sigpending(struct task_struct *p)
{
	return task_sigpending(p);
}

__rust_helper bool rust_helper_test_notify_signal(void)
{
	return test_thread_flag(TIF_NOTIFY_SIGNAL);
}

__rust_helper bool rust_helper_in_compat_syscall(void)
{
	return in_compat_syscall();
}

__rust_helper void rust_helper_restore_saved_sigmask(void)
{
	restore_saved_sigmask();
}

__rust_helper int
rust_helper_register_trace_sched_process_exit(void (*probe)(void *, struct task_struct *, bool),
					      void *data)
{
	return register_trace_sched_process_exit(probe, data);
}

__rust_helper int
rust_helper_unregister_trace_sched_process_exit(void (*probe)(void *, struct task_struct *, bool),
						void *data)
{
	return unregister_trace_sched_process_exit(probe, data);
}

__rust_helper void rust_helper_tracepoint_synchronize_unregister(void)
{
	tracepoint_synchronize_unregister();
}

/*
 * Whether the current thread's system calls are watched by something atoms
 * would bypass: ptrace syscall tracing or emulation, the raw_syscalls
 * tracepoints, or syscall auditing that writes records. SYSCALL_AUDIT alone
 * does not say audit writes one: once audit was ever enabled, every new task
 * keeps the work flag (and an audit context) even with audit disabled again
 * or no rule loaded; __audit_syscall_entry() then leaves the context dummy
 * (or does nothing), and no record is written.
 */
__rust_helper bool rust_helper_current_syscalls_watched(void)
{
	if (test_syscall_work(SYSCALL_TRACE) || test_syscall_work(SYSCALL_EMU) ||
	    test_syscall_work(SYSCALL_TRACEPOINT))
		return true;
#ifdef CONFIG_AUDITSYSCALL
	if (test_syscall_work(SYSCALL_AUDIT) && audit_enabled != AUDIT_OFF &&
	    !audit_dummy_context())
		return true;
#endif
	return false;
}

#ifdef CONFIG_SYSLET_HOOKS
extern int sysctl_syslet_disabled;	/* kernel/syslet_sysctl.c */

__rust_helper int rust_helper_syslet_disabled(void)
{
	return READ_ONCE(sysctl_syslet_disabled);
}
#endif
