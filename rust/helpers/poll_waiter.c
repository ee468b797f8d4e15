// SPDX-License-Identifier: GPL-2.0

#include <linux/list.h>
#include <linux/poll.h>
#include <linux/wait.h>

__rust_helper void rust_helper_init_poll_funcptr(poll_table *pt, poll_queue_proc qproc)
{
	init_poll_funcptr(pt, qproc);
}

__rust_helper __poll_t rust_helper_vfs_poll(struct file *file, struct poll_table_struct *pt)
{
	return vfs_poll(file, pt);
}

__rust_helper void rust_helper_init_waitqueue_func_entry(struct wait_queue_entry *wq_entry,
							 wait_queue_func_t func)
{
	init_waitqueue_func_entry(wq_entry, func);
}

__rust_helper void rust_helper_list_del_init(struct list_head *entry)
{
	list_del_init(entry);
}
