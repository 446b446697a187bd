/* User lookup straight from /etc/passwd and /etc/group: envd runs in any rootfs, with or
 * without NSS modules, so it never goes through getpwnam(). */
#include <grp.h>
#include <pwd.h>
#include <sys/fsuid.h>
#include <sys/syscall.h>
#include "envd.h"
#include "common/log.h"

static void fill_user(const struct passwd *pw, struct user_info *out)
{
	memset(out, 0, sizeof(*out));
	out->uid = pw->pw_uid;
	out->gid = pw->pw_gid;
	snprintf(out->name, sizeof(out->name), "%s", pw->pw_name);
	snprintf(out->home, sizeof(out->home), "%s", isempty(pw->pw_dir) ? "/" : pw->pw_dir);
	snprintf(out->shell, sizeof(out->shell), "%s",
		 isempty(pw->pw_shell) ? "/bin/sh" : pw->pw_shell);
	out->groups[out->ngroups++] = pw->pw_gid;

	_cleanup_fclose_ FILE *f = fopen("/etc/group", "re");
	if (!f)
		return;
	struct group gr, *res;
	char buf[4096];
	while (fgetgrent_r(f, &gr, buf, sizeof(buf), &res) == 0) {
		if (gr.gr_gid == pw->pw_gid)
			continue;
		for (char **m = gr.gr_mem; m && *m; m++)
			if (streq(*m, pw->pw_name) && out->ngroups < (int)ELEMENTSOF(out->groups)) {
				out->groups[out->ngroups++] = gr.gr_gid;
				break;
			}
	}
}

static int passwd_find(const char *name, uid_t uid, struct user_info *out)
{
	_cleanup_fclose_ FILE *f = fopen("/etc/passwd", "re");
	if (!f)
		return -errno;
	struct passwd pw, *res;
	char buf[4096];
	while (fgetpwent_r(f, &pw, buf, sizeof(buf), &res) == 0) {
		if (name ? streq(pw.pw_name, name) : pw.pw_uid == uid) {
			fill_user(&pw, out);
			return 0;
		}
	}
	return -ENOENT;
}

int user_lookup(const char *name, struct user_info *out)
{
	if (isempty(name))
		return -ENOENT;
	return passwd_find(name, 0, out);
}

int user_lookup_uid(uid_t uid, struct user_info *out)
{
	int r = passwd_find(NULL, uid, out);
	if (r >= 0)
		return r;
	/* A uid with no passwd entry (common in minimal images): still usable. */
	memset(out, 0, sizeof(*out));
	out->uid = uid;
	out->gid = uid == geteuid() ? getegid() : uid;
	snprintf(out->name, sizeof(out->name), "%u", (unsigned)uid);
	const char *home = uid == 0 ? "/root" : getenv("HOME");
	snprintf(out->home, sizeof(out->home), "%s", isempty(home) ? "/" : home);
	snprintf(out->shell, sizeof(out->shell), "/bin/sh");
	out->groups[out->ngroups++] = out->gid;
	return 0;
}

static void id_name(const char *file, unsigned id, char *buf, size_t size)
{
	_cleanup_fclose_ FILE *f = fopen(file, "re");
	char line[1024];
	while (f && fgets(line, sizeof(line), f)) {
		/* name:x:id:... */
		char *c1 = strchr(line, ':');
		char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
		if (!c2)
			continue;
		char *end;
		unsigned long v = strtoul(c2 + 1, &end, 10);
		if (end != c2 + 1 && *end == ':' && v == id) {
			*c1 = 0;
			snprintf(buf, size, "%s", line);
			return;
		}
	}
	snprintf(buf, size, "%u", id);
}

void user_name_of(uid_t uid, char *buf, size_t size)
{
	id_name("/etc/passwd", uid, buf, size);
}

void group_name_of(gid_t gid, char *buf, size_t size)
{
	id_name("/etc/group", gid, buf, size);
}

int user_resolve(const char *explicit_name, struct user_info *out)
{
	int r;
	if (!isempty(explicit_name)) {
		r = user_lookup(explicit_name, out);
	} else {
		pthread_rwlock_rdlock(&envd.lock);
		char name[64] = "";
		if (envd.default_user)
			snprintf(name, sizeof(name), "%s", envd.default_user);
		pthread_rwlock_unlock(&envd.lock);
		r = name[0] ? user_lookup(name, out) : user_lookup_uid(geteuid(), out);
	}
	if (r < 0)
		return r;
	if (geteuid() != 0 && out->uid != geteuid())
		return -EPERM;
	return 0;
}

/* Credentials are per-thread in the kernel: setfsuid/setfsgid and the raw setgroups system call
 * (glibc's wrapper would apply it to every thread) change what this request's file operations
 * may touch, and who owns what they create, without touching other threads. */
static gid_t envd_groups[64];
static int envd_ngroups = -1;
static pthread_once_t envd_groups_once = PTHREAD_ONCE_INIT;

static void save_groups(void)
{
	envd_ngroups = getgroups(ELEMENTSOF(envd_groups), envd_groups);
}

void fsid_enter(const struct user_info *u)
{
	if (geteuid() != 0)
		return;
	pthread_once(&envd_groups_once, save_groups);
	syscall(SYS_setgroups, (size_t)u->ngroups, u->groups);
	setfsgid(u->gid);
	setfsuid(u->uid);
}

void fsid_leave(void)
{
	if (geteuid() != 0)
		return;
	setfsuid(0);
	setfsgid(0);
	if (envd_ngroups >= 0)
		syscall(SYS_setgroups, (size_t)envd_ngroups, envd_groups);
}
