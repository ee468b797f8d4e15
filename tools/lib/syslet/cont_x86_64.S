/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Continuations for syslet, x86-64 System V.
 *
 * A continuation is "the rest of the program" at a call to
 * syslet__switch_and_exec(): what the callee must preserve (rbx, rbp,
 * r12-r15, the stack pointer, the return address, MXCSR and the x87 control
 * word). It is saved on the program's own stack, just below the return
 * address, and its address is the cookie SYSLET_IOC_EXEC hands to a spare.
 *
 * Layout of the saved continuation, from the cookie up:
 *
 *	 0	MXCSR (4 bytes), x87 control word (2 bytes), padding
 *	 8	r15
 *	16	r14
 *	24	r13
 *	32	r12
 *	40	rbx
 *	48	rbp
 *	56	return address (pushed by the caller's call)
 *
 * Not carried: the protection-key register (PKRU) is the thread's, so a
 * program using pkey_set() sees the spare's; and a CET shadow stack would
 * refuse syslet__resume()'s return (this file has no GNU property note, so
 * the library is built without it).
 *
 * No function here has unwind information on purpose: the exec stack has
 * no caller, and an unwinder (pthread_exit's, a debugger's) must stop here
 * rather than walk into another thread's stack.
 */

	.text

/*
 * long syslet__switch_and_exec(struct syslet_ring *ring, unsigned int count,
 *				void *exec_stack_top, struct syslet_pool *pool);
 *
 * Saves the continuation, moves to @exec_stack_top (this thread's own exec
 * stack, 16-byte aligned) and calls syslet__exec_cont(ring, count, cookie).
 * If the kernel kept the continuation with this thread, comes back to the
 * program's stack and returns the exec's result. If a spare took it over,
 * this thread never touches the program's stack again: it becomes a spare
 * itself (syslet__become_spare() does not return), and the program returns
 * from this function on the spare's thread (see syslet__resume()).
 */
	.globl	syslet__switch_and_exec
	.hidden	syslet__switch_and_exec
	.type	syslet__switch_and_exec, @function
syslet__switch_and_exec:
	pushq	%rbp			/* the callee-saved registers: the continuation */
	pushq	%rbx
	pushq	%r12
	pushq	%r13
	pushq	%r14
	pushq	%r15
	subq	$8, %rsp		/* room for the two control words */
	stmxcsr	(%rsp)			/* SSE rounding and exception masks */
	fnstcw	4(%rsp)			/* x87 precision, rounding and masks */
	movq	%rcx, %r12		/* the pool, kept for the handed-off path: the ring
					 * may be gone by then (the program runs elsewhere) */
	movq	%rsp, %rbx		/* the cookie: where the continuation is */
	movq	%rdx, %rsp		/* onto the exec stack; the program's stack is left as is */
	movq	%rbx, %rdx		/* third argument: the cookie */
	call	syslet__exec_cont	/* SYSLET_IOC_EXEC naming the continuation */
	testq	%rax, %rax		/* an error: the continuation stayed here */
	js	1f
	btq	$30, %rax		/* SYSLET_EXEC_RET_HANDED_OFF: a spare runs the program */
	jc	2f
1:	movq	%rbx, %rsp		/* kept: back onto the program's stack */
	addq	$8, %rsp		/* the control words did not change */
	popq	%r15			/* the callee-saved registers, unchanged too */
	popq	%r14
	popq	%r13
	popq	%r12
	popq	%rbx
	popq	%rbp
	ret				/* the exec's result, in rax */
2:	movq	%r12, %rdi		/* handed off: this thread stays on its exec stack */
	call	syslet__become_spare	/* parks, then resumes some continuation; no return */
	ud2

	.size	syslet__switch_and_exec, .-syslet__switch_and_exec

/*
 * struct syslet__threadlet_ret { long result; long went_async; }
 * syslet__threadlet_enter(void *threadlet_stack_top, long (*fn)(void *),
 *			   void *arg, __u64 *slot_state, struct syslet_pool *pool);
 *
 * Saves the continuation (the same layout as above), moves to
 * @threadlet_stack_top (this thread's own, 16-byte aligned), publishes the
 * cookie in the thread's slot and calls fn(arg). From the store of the
 * cookie until its exchange with 0, the kernel hands the continuation to a
 * spare if this thread sleeps. Leaving with the cookie still there: fn ran
 * inline; back onto the program's stack, returning {fn's result, 0} in
 * rax:rdx. Leaving with anything else (cookie | SYSLET_THREADLET_HANDED):
 * the program runs on a spare, whose syslet__resume() returned it
 * {SYSLET_WENT_ASYNC, 1}; this thread posts fn's result and becomes a spare
 * itself (syslet__threadlet_orphaned() does not return).
 */
	.globl	syslet__threadlet_enter
	.hidden	syslet__threadlet_enter
	.type	syslet__threadlet_enter, @function
syslet__threadlet_enter:
	pushq	%rbp			/* the continuation, as in syslet__switch_and_exec */
	pushq	%rbx
	pushq	%r12
	pushq	%r13
	pushq	%r14
	pushq	%r15
	subq	$8, %rsp
	stmxcsr	(%rsp)
	fnstcw	4(%rsp)
	movq	%rcx, %r12		/* the slot's state word; callee-saved, so fn keeps it */
	movq	%r8, %r13		/* the pool, for the handed-off path */
	movq	%rsp, %rbx		/* the cookie: 16-byte aligned, low bits clear */
	movq	%rdi, %rsp		/* onto the threadlet stack */
	movq	%rdx, %rdi		/* fn's argument */
	movq	%rbx, (%r12)		/* enter: a block now hands the continuation over
					 * (an x86 store is a release: the saved registers
					 * and user_data are visible first) */
	call	*%rsi			/* fn(arg), on the threadlet stack */
	xorl	%ecx, %ecx
	xchgq	%rcx, (%r12)		/* leave, atomically: no handoff after this */
	cmpq	%rcx, %rbx		/* still the bare cookie: nothing took it over */
	jne	2f
	movq	%rbx, %rsp		/* back onto the program's stack */
	addq	$8, %rsp		/* the control words did not change */
	popq	%r15			/* nor did the callee-saved registers */
	popq	%r14
	popq	%r13
	popq	%r12
	popq	%rbx
	popq	%rbp
	xorl	%edx, %edx		/* went_async = 0; fn's result is in rax */
	ret
2:	movq	%rax, %rdi		/* handed off: post fn's result from here */
	movq	%r13, %rsi
	call	syslet__threadlet_orphaned	/* posts, then parks as a spare; no return */
	ud2

	.size	syslet__threadlet_enter, .-syslet__threadlet_enter

/*
 * void syslet__resume(void *cookie, long result, long went_async);
 *
 * Resumes the continuation saved at @cookie on the calling thread: its
 * syslet__switch_and_exec() returns @result here, or its
 * syslet__threadlet_enter() returns {@result, @went_async} (rdx, the third
 * argument, is left as it came). The caller's own stack is abandoned; it
 * must be one no other thread uses (its exec or threadlet stack).
 */
	.globl	syslet__resume
	.hidden	syslet__resume
	.type	syslet__resume, @function
syslet__resume:
	movq	%rdi, %rsp		/* onto the program's stack, at the continuation */
	ldmxcsr	(%rsp)			/* the program's SSE modes, not this thread's */
	fldcw	4(%rsp)			/* and its x87 control word */
	addq	$8, %rsp
	popq	%r15			/* the callee-saved registers as the program left them */
	popq	%r14
	popq	%r13
	popq	%r12
	popq	%rbx
	popq	%rbp
	movq	%rsi, %rax		/* what the program's call returns (rdx: went_async) */
	ret				/* to the program, now on this thread */

	.size	syslet__resume, .-syslet__resume

	.section .note.GNU-stack, "", @progbits
