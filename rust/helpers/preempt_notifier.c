// SPDX-License-Identifier: GPL-2.0

#include <linux/preempt.h>

#ifdef CONFIG_PREEMPT_NOTIFIERS
__rust_helper void rust_helper_preempt_notifier_init(struct preempt_notifier *notifier,
						     struct preempt_ops *ops)
{
	preempt_notifier_init(notifier, ops);
}
#endif

__rust_helper void rust_helper_preempt_disable(void)
{
	preempt_disable();
}

__rust_helper void rust_helper_preempt_enable(void)
{
	preempt_enable();
}
