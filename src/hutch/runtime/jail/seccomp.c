/*
 * The sandbox's seccomp filter, built with libseccomp from seccomp-allow.txt (reviewed data,
 * embedded at build time), and its capability bounding set.
 */
#include <ctype.h>
#include <seccomp.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/mman.h>
#include "jail.h"
#include "common/macro.h"
#include "seccomp-allow.h"

struct rule_cb {
	scmp_filter_ctx ctx; /* NULL: only parse */
	unsigned rules;
	char *err;
};

static int errno_by_name(const char *name)
{
	static const struct {
		const char *name;
		int value;
	} table[] = { { "ENOSYS", ENOSYS }, { "EPERM", EPERM }, { "EACCES", EACCES } };
	for (size_t i = 0; i < ELEMENTSOF(table); i++)
		if (streq(name, table[i].name))
			return table[i].value;
	return -1;
}

/* "aN==V" or "aN&M==V" */
static int parse_cond(const char *tok, struct scmp_arg_cmp *cmp)
{
	char *end;
	if (tok[0] != 'a' || !isdigit((unsigned char)tok[1]) || tok[1] > '5')
		return -EINVAL;
	unsigned arg = (unsigned)(tok[1] - '0');
	const char *p = tok + 2;
	uint64_t mask = 0;
	bool masked = *p == '&';
	if (masked) {
		errno = 0;
		mask = strtoull(p + 1, &end, 0);
		if (errno || end == p + 1)
			return -EINVAL;
		p = end;
	}
	if (strncmp(p, "==", 2) != 0)
		return -EINVAL;
	errno = 0;
	uint64_t value = strtoull(p + 2, &end, 0);
	if (errno || end == p + 2 || *end)
		return -EINVAL;
	*cmp = masked ? SCMP_CMP(arg, SCMP_CMP_MASKED_EQ, mask, value)
		      : SCMP_CMP(arg, SCMP_CMP_EQ, value);
	return 0;
}

static int add_rule(struct rule_cb *cb, int nr, uint32_t action, const struct scmp_arg_cmp *cmp)
{
	cb->rules++;
	if (!cb->ctx || nr == __NR_SCMP_ERROR)
		return 0;
	return cmp ? seccomp_rule_add(cb->ctx, action, nr, 1, *cmp)
		   : seccomp_rule_add(cb->ctx, action, nr, 0);
}

static int parse_line(struct rule_cb *cb, char *line, unsigned lineno)
{
	char *hash = strchr(line, '#');
	if (hash)
		*hash = 0;
	char *save = NULL, *name = strtok_r(line, " \t", &save);
	if (!name)
		return 0;
	int nr = seccomp_syscall_resolve_name(name);
	uint32_t action = SCMP_ACT_ALLOW;
	struct scmp_arg_cmp conds[8];
	unsigned n = 0;
	for (char *tok; (tok = strtok_r(NULL, " \t", &save));) {
		if (startswith(tok, "errno=")) {
			int e = errno_by_name(tok + 6);
			if (e < 0)
				goto bad;
			action = SCMP_ACT_ERRNO((uint32_t)e);
		} else if (n < ELEMENTSOF(conds) && parse_cond(tok, &conds[n]) == 0) {
			n++;
		} else {
			goto bad;
		}
	}
	if (n == 0)
		return add_rule(cb, nr, action, NULL);
	for (unsigned i = 0; i < n; i++) {
		int r = add_rule(cb, nr, action, &conds[i]);
		if (r < 0)
			return r;
	}
	return 0;
bad:
	if (!cb->err &&
	    asprintf(&cb->err, "seccomp-allow.txt:%u: cannot parse '%s'", lineno, name) < 0)
		cb->err = NULL;
	return -EINVAL;
}

static int parse_list(struct rule_cb *cb)
{
	_cleanup_free_ char *text = strdup(seccomp_allow_txt);
	if (!text)
		return -ENOMEM;
	unsigned lineno = 0;
	char *rest = text;
	for (char *line; (line = strsep(&rest, "\n"));) {
		lineno++;
		int r = parse_line(cb, line, lineno);
		if (r < 0)
			return r;
	}
	return (int)cb->rules;
}

int jail_seccomp_check(char **err)
{
	struct rule_cb cb = { 0 };
	int r = parse_list(&cb);
	if (err)
		*err = cb.err;
	else
		free(cb.err);
	return r;
}

int jail_seccomp_compile(struct jail_seccomp_prog *prog)
{
	struct rule_cb cb = { .ctx = seccomp_init(SCMP_ACT_ERRNO(EPERM)) };
	if (!cb.ctx)
		return -ENOMEM;
	/* Only the native ABI: 32-bit and x32 entry points are killed (compat syscalls are a
	 * steady source of kernel bugs, and sandboxes run 64-bit userlands). */
	int r = seccomp_attr_set(cb.ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS);
	if (r == 0)
		r = parse_list(&cb);
	if (cb.err) {
		fprintf(stderr, "%s\n", cb.err);
		free(cb.err);
	}
	/* libseccomp 2.5 exports BPF only to an fd. */
	_cleanup_close_ int fd = r < 0 ? -1 : memfd_create("seccomp", MFD_CLOEXEC);
	if (r >= 0 && fd < 0)
		r = -errno;
	if (r >= 0)
		r = seccomp_export_bpf(cb.ctx, fd);
	seccomp_release(cb.ctx);
	if (r < 0)
		return r;
	off_t size = lseek(fd, 0, SEEK_END);
	if (size <= 0 || size % sizeof(struct sock_filter) || size > 65535 * 8)
		return -EINVAL;
	prog->filter = malloc((size_t)size);
	if (!prog->filter)
		return -ENOMEM;
	if (pread(fd, prog->filter, (size_t)size, 0) != size) {
		free(prog->filter);
		return -EIO;
	}
	prog->len = (unsigned short)(size / sizeof(struct sock_filter));
	return 0;
}

int jail_seccomp_install(const struct jail_seccomp_prog *prog)
{
	struct sock_fprog fp = { .len = prog->len, .filter = prog->filter };
	if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &fp) < 0)
		return -errno;
	return 0;
}

/* Docker's default set for root in a container. */
static const int kept_caps[] = {
	CAP_CHOWN,	CAP_DAC_OVERRIDE, CAP_FOWNER,	   CAP_FSETID,		 CAP_KILL,
	CAP_SETGID,	CAP_SETUID,	  CAP_SETPCAP,	   CAP_NET_BIND_SERVICE, CAP_NET_RAW,
	CAP_SYS_CHROOT, CAP_MKNOD,	  CAP_AUDIT_WRITE, CAP_SETFCAP,
};

static int last_cap(void)
{
	FILE *f = fopen("/proc/sys/kernel/cap_last_cap", "re");
	int last = 40;
	if (f) {
		if (fscanf(f, "%d", &last) != 1)
			last = 40;
		fclose(f);
	}
	return last;
}

int jail_caps_drop(void)
{
	uint64_t keep = 0;
	for (size_t i = 0; i < ELEMENTSOF(kept_caps); i++)
		keep |= 1ull << kept_caps[i];
	int last = last_cap();
	for (int c = 0; c <= last; c++)
		if (!(keep & (1ull << c)) && prctl(PR_CAPBSET_DROP, c, 0, 0, 0) < 0 &&
		    errno != EINVAL)
			return -errno;
	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
		return -errno;
	struct __user_cap_header_struct h = { .version = _LINUX_CAPABILITY_VERSION_3 };
	struct __user_cap_data_struct d[2] = { 0 };
	for (int i = 0; i < 2; i++) {
		uint32_t bits = (uint32_t)(keep >> (32 * i));
		/* No inheritable set (CVE-2022-24769): exec'd programs get caps as root only. */
		d[i].effective = d[i].permitted = bits;
	}
	if (syscall(SYS_capset, &h, d) < 0)
		return -errno;
	return 0;
}
