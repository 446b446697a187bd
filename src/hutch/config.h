/* hutch's configuration: defaults < config file (JSON) < HUTCH_* environment < flags,
 * validated once at start. Every limit a user can reach is here. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct hutch_config {
	char *data_dir;
	char *cache_dir; /* shared slow artifacts (base rootfs) */
	char listen_addr[128];
	uint16_t listen_port;
	char sandbox_addr[128];
	uint16_t sandbox_port;
	char *domain;	   /* the Sandbox.domain field; default "localhost:<sandbox port>" */
	char *envd_bundle; /* default: <dir of hutch>/envd-bundle */
	char *init_path;   /* default: <dir of hutch>/src/sandbox-tools/hutch-init */
	char *shim_path;   /* <dir of hutch>/hutch-shim if present; NULL: `hutch shim` */
	char *mirror;	   /* Debian mirror for the base template; NULL: apt sources */
	char *image_dirs;  /* ':'-separated dirs FROM oci:/docker-archive: may read; NULL: none */

	unsigned default_timeout_s;
	unsigned max_timeout_s;
	unsigned default_cpu;
	unsigned default_memory_mb;
	unsigned default_disk_mb;
	unsigned pids_max;
	unsigned pids_reserve; /* pids of init and envd beyond pids_max (left in a flood) */
	unsigned max_sandboxes;
	unsigned start_timeout_ms;
	unsigned warm_sandboxes; /* started, unassigned sandboxes kept per template (0: none) */
	size_t max_body;	 /* REST request bodies */
	/* Connection limits of the API and the front door (lib/http). */
	unsigned api_idle_timeout_s;	 /* the API closes connections silent this long */
	unsigned sandbox_idle_timeout_s; /* the front door, likewise (above envd's 50 s pings) */
	unsigned conns_per_ip;		 /* open connections from one client address, each */

	char net_subnet[32];
	char net_prefix[8];
	unsigned net_warm;
	uint32_t uid_base; /* first host uid handed to sandboxes */
};

/* Fills defaults (data dir by uid: /var/lib/hutch as root, else ~/.local/share/hutch). */
int config_defaults(struct hutch_config *c, const char *argv0);
/* Reads a JSON object whose keys are the long flag names ("listen", "max-sandboxes"...). */
int config_load_file(struct hutch_config *c, const char *path);
/* Applies HUTCH_<NAME> variables (HUTCH_DATA_DIR, HUTCH_LISTEN, ...). */
/* Every option's name: the flag (--NAME), the config file key and HUTCH_<NAME> in upper case with
 * '_' for '-'. */
extern const char *const config_option_names[];
extern const size_t config_option_count;
int config_load_env(struct hutch_config *c);
/* Sets one option by its flag name; -EINVAL with a message on stderr for bad values. */
int config_set(struct hutch_config *c, const char *name, const char *value);
/* Checks consistency; fills derived defaults (domain). */
int config_finish(struct hutch_config *c);
void config_free(struct hutch_config *c);
