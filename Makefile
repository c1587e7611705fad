# chancy: a job queue and worker pool inside PostgreSQL (PGXS build)

EXTENSION = chancy
MODULE_big = chancy
OBJS = src/chancy.o src/slots.o src/ledger.o src/catalog.o src/function.o \
	src/job.o src/queue.o src/api.o src/control.o src/wakeup.o src/ddl.o \
	src/launcher.o src/supervisor.o src/executor.o src/limits.o \
	src/isolated.o src/cron.o src/schedule.o src/command.o src/flow.o \
	src/stats.o src/workflow.o
DATA = chancy--1.0.sql chancy--1.1.sql chancy--1.0--1.1.sql
HEADERS_chancy = include/chancy.h
PGFILEDESC = "chancy - job queue and worker pool"
PG_CPPFLAGS = -I$(srcdir)/include

# Every test starts its own throwaway instance with chancy preloaded.
REGRESS = push definitions builders unique privileges queues wait plan cron schedules commands limits workflows retry
REGRESS_OPTS = --temp-instance=tmp_check --temp-config=test/chancy.conf
ISOLATION = unique_push schedule_race limit_race limit_claims workflow_fan_in
ISOLATION_OPTS = --temp-instance=tmp_check_iso --temp-config=test/chancy_iso.conf
TAP_TESTS = 1

PG_CONFIG ?= pg_config
# no LLVM bitcode: it needs clang, and jobs are not JIT-compiled
override with_llvm = no
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# The example job library (examples/) is built and installed alongside:
# the tests and the README demo use it.  So is the dashboard, chancy-web
# (web/), a program of its own, into PostgreSQL's bindir.
all: all-examples all-web
install: install-examples install-web
clean: clean-examples clean-web

all-web:
	$(MAKE) -C web PG_CONFIG=$(PG_CONFIG)
install-web:
	$(MAKE) -C web PG_CONFIG=$(PG_CONFIG) install
clean-web:
	$(MAKE) -C web PG_CONFIG=$(PG_CONFIG) clean

all-examples:
	$(MAKE) -C examples PG_CONFIG=$(PG_CONFIG)
install-examples:
	$(MAKE) -C examples PG_CONFIG=$(PG_CONFIG) install
clean-examples:
	$(MAKE) -C examples PG_CONFIG=$(PG_CONFIG) clean

.PHONY: all-examples install-examples clean-examples all-web install-web clean-web

# PGXS tracks no header dependencies (without --enable-depend): every file
# includes these two, so a change to them rebuilds everything.
$(OBJS): src/chancy_internal.h src/compat.h include/chancy.h

# The three suites one by one (test/run runs them all and sums up).
installcheck-regress:
	$(pg_regress_installcheck) $(REGRESS_OPTS) $(REGRESS)
installcheck-isolation:
	$(pg_isolation_regress_installcheck) $(ISOLATION_OPTS) $(ISOLATION)
installcheck-tap: test-module
	$(prove_installcheck)
# plain installcheck runs the TAP tests too, which load test/module
installcheck: test-module

# misbehaving jobs for the TAP tests, loaded by path, never installed
test-module:
	$(MAKE) -C test/module PG_CONFIG=$(PG_CONFIG)
clean: clean-test-module
clean-test-module:
	$(MAKE) -C test/module PG_CONFIG=$(PG_CONFIG) clean

.PHONY: installcheck-regress installcheck-isolation installcheck-tap test-module \
	clean-test-module

# The release's version: chancy.control's default_version, in the
# three-part form PGXN and Debian use (1.1 is 1.1.0).
EXTVERSION := $(shell sed -n "s/^default_version = '\(.*\)'/\1/p" $(srcdir)/chancy.control)
DISTVERSION := $(EXTVERSION).0

# META.json for PGXN takes its versions from chancy.control; test/versions
# checks that the committed one is what this makes.
META.json: META.json.in chancy.control
	sed -e 's/@VERSION@/$(DISTVERSION)/g' -e 's/@EXTVERSION@/$(EXTVERSION)/g' $< > $@

# The release archive PGXN takes: the committed tree, as chancy-1.1.0.zip.
dist: META.json
	git archive --format zip --prefix=chancy-$(DISTVERSION)/ -o chancy-$(DISTVERSION).zip HEAD

.PHONY: dist
