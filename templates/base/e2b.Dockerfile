# The default `base` template, shaped like E2B's: Debian 12 with a sudo-capable `user`.
#
# Compiled into hutch (src/hutch/template/meson.build embeds it) and built by the template
# builder when `hutch serve` starts, like any Dockerfile sent through the API: every RUN is a
# layer in the shared cache keyed by its content, so an edit here builds new layers, and an
# unchanged file (or a new data dir on a machine that built it before) is ready from the cache
# at once. Apt fetches from the Debian mirror debootstrap used: the machine's apt sources, or
# `hutch serve --mirror`.
#
# FROM debian:bookworm is debootstrap's minbase, with placeholders for /etc/hostname,
# /etc/hosts and an empty /etc/resolv.conf: the runtime writes each sandbox's own, and a RUN
# cannot change them in a layer (as in Docker). The builder then gives it the user `user`
# (useradd: the first free uid, 1000 on a fresh Debian), as it does for every image.
FROM debian:bookworm

ARG DEBIAN_FRONTEND=noninteractive

# What E2B's base promises (python3, node, git, curl, sudo, ps, ip), as debootstrap would
# include them: no Recommends. No package lists, caches or logs stay in the layer.
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      bash coreutils ca-certificates curl git python3 nodejs sudo procps iproute2 \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/cache/debconf/*-old \
      /var/lib/dpkg/*-old /var/log/apt/* /var/log/dpkg.log /var/log/alternatives.log \
      /tmp/* /var/tmp/* /root/.cache

# E2B's default user: uid/gid 1000, home /home/user, bash, passwordless sudo. C.UTF-8 is built
# into libc6 (no locales package); /etc/default/locale gives it to login shells (sudo -i, su -).
RUN usermod --shell /bin/bash user \
 && test "$(id -u user):$(id -g user):$(getent passwd user | cut -d: -f6)" = 1000:1000:/home/user \
 && echo 'user ALL=(ALL:ALL) NOPASSWD: ALL' > /etc/sudoers.d/user \
 && chmod 0440 /etc/sudoers.d/user \
 && visudo -c -q \
 && echo 'LANG=C.UTF-8' > /etc/default/locale

ENV LANG=C.UTF-8
USER user
WORKDIR /home/user
