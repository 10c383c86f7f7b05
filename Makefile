# Makefile for rungate (PGXS).
#
#   make && make install      build and install into the PostgreSQL 15 tree
#   make test                 deps, build, throwaway cluster, every suite (test/run-tests.sh)
#   make test PG=18           the same against PostgreSQL 18 (15, 17, 18, 19; see below)
#   make test-matrix          make test on every tested major, one line each (test/matrix.sh)
#   make demo                 play test/demo.sql against a throwaway cluster
#   make bench                rungate side by side with a bare SKIP LOCKED queue (test/bench/README.md)
#   make bench-versus         the bench figures, this tree against 1.5 (BASE=<commit>, default aafad6a),
#                             side by side on copies of one PostgreSQL (test/bench/versus.sh, ~2.5 h)
#   make stress               the long suites: chaos and sqlsmith (test/stress/README.md)
#   make installcheck         pg_regress + isolation against a running server (PG* env)
#   make lint                 cppcheck and clang-tidy over src/*.c

EXTENSION   = rungate
# the one version source: default_version in the control file
EXTVERSION := $(shell sed -n "s/^default_version[[:space:]]*=[[:space:]]*'\([^']*\)'.*/\1/p" $(EXTENSION).control)

MODULE_big  = rungate
OBJS        = src/rungate.o src/authcache.o src/decision.o src/transition.o src/dispatch.o src/worker.o src/control.o src/maintenance.o src/triggers.o src/monitoring.o src/rowwrite.o \
              src/queue.o src/flow.o src/running.o src/wakeup.o src/metrics.o src/replication.o \
              src/cron.o src/schedules.o src/scheduler.o src/runstatus.o src/catalog.o src/optypes.o src/facts.o src/references.o

DATA        = $(wildcard $(EXTENSION)--*.sql)
PGFILEDESC  = "rungate - queued runs re-authorized when they start"

# PostgreSQL's headers are clean under -Wextra except for unused parameters
# (checked with gcc 12 against the PG 15 server headers).
PG_CFLAGS  += -Wall -Wextra -Werror -Wno-unused-parameter

# pg_regress: sql/<name>.sql against expected/<name>.out
REGRESS      = $(sort $(basename $(notdir $(wildcard sql/*.sql))))
REGRESS_OPTS = --inputdir=. --outputdir=results/regress
# isolation: test/specs/<name>.spec against test/expected/<name>.out
ISOLATION      = $(sort $(basename $(notdir $(wildcard test/specs/*.spec))))
ISOLATION_OPTS = --inputdir=test --outputdir=results/isolation

EXTRA_CLEAN = results/ src/.built-for

# PG=<major> picks the server: 15 is bookworm's packages, the others the
# trees that test/pg-build.sh sets up in $(RG_PG_CACHE)/<major> (make test
# sets one up when missing). Without PG: PG_CONFIG, else 15's.
RG_PG_CACHE ?= /work/.cache/pg
ifneq ($(PG),)
ifeq ($(PG),15)
PG_CONFIG := /usr/lib/postgresql/15/bin/pg_config
else
PG_CONFIG := $(RG_PG_CACHE)/$(PG)/bin/pg_config
endif
export RG_PG := $(PG)
export PG_CONFIG RG_PG_CACHE
endif
PG_CONFIG ?= $(firstword $(wildcard /usr/lib/postgresql/15/bin/pg_config) pg_config)
PGXS      := $(wildcard $(shell $(PG_CONFIG) --pgxs 2>/dev/null))
ifneq ($(PGXS),)
include $(PGXS)
else ifeq ($(filter test test-matrix test-scaleout demo bench bench-versus stress,$(MAKECMDGOALS)),)
# 'make test', 'make demo' (and bench, stress) install the build dependencies themselves
ifneq ($(RG_PG),)
$(error PGXS not found via $(PG_CONFIG): run 'bash test/pg-build.sh $(RG_PG)' (it knows 17, 18, 19), or 'make test PG=$(RG_PG)')
else
$(error PGXS not found via $(PG_CONFIG): install postgresql-server-dev-15, or run 'make test')
endif
endif

# every object depends on the shared headers (after the include: a rule
# before it would become the default goal)
$(OBJS): src/rungate.h src/pg_compat.h src/runstatus.h src/run.h src/triggers.h src/facts.h

# Objects built for another PostgreSQL are rebuilt: src/.built-for names the
# pg_config and version they were compiled with, and changes only with them.
PG_BUILT_FOR := $(PG_CONFIG) $(shell $(PG_CONFIG) --version 2>/dev/null)
$(OBJS) $(OBJS:.o=.bc): src/.built-for
src/.built-for: FORCE
	@echo '$(PG_BUILT_FOR)' | cmp -s - $@ || echo '$(PG_BUILT_FOR)' >$@
FORCE:

ifeq ($(wildcard $(EXTENSION)--$(EXTVERSION).sql $(EXTENSION)--*--$(EXTVERSION).sql),)
$(error neither $(EXTENSION)--$(EXTVERSION).sql nor an update script to $(EXTVERSION) (default_version in $(EXTENSION).control is '$(EXTVERSION)'))
endif

.PHONY: test test-matrix demo bench bench-versus stress lint installcheck-regress installcheck-isolation FORCE

test:
	@bash test/run-tests.sh

# make test on 15, 17, 18 and 19 (RG_MATRIX="17 18" for some), one line each
test-matrix:
	@bash test/matrix.sh

demo:
	@bash test/demo.sh

# performance side by side with a bare SKIP LOCKED queue (not part of test)
bench:
	@bash test/bench/run.sh

# this tree's bench figures against another commit's build (BASE, default
# 1.5's last commit, set in test/bench/versus.sh), side by side in one run:
# results/bench/versus.md
bench-versus:
	@$(if $(BASE),BENCH_VERSUS_BASE='$(BASE)' )bash test/bench/versus.sh

# the long suites, before each release: chaos and sqlsmith (not part of test)
stress:
	@bash test/stress/run.sh

# One suite at a time, against the server named by PGHOST/PGPORT/PGUSER
# (test/run-tests.sh uses these).
installcheck-regress:
ifneq ($(REGRESS),)
	$(pg_regress_installcheck) $(REGRESS_OPTS) $(REGRESS)
endif

installcheck-isolation:
ifneq ($(ISOLATION),)
	$(pg_isolation_regress_installcheck) $(ISOLATION_OPTS) $(ISOLATION)
endif

LINT_SOURCES = $(wildcard src/*.c)
TIDY_CHECKS  = -*,clang-analyzer-*,bugprone-*,-bugprone-reserved-identifier,-bugprone-easily-swappable-parameters,-bugprone-narrowing-conversions,-bugprone-macro-parentheses,-bugprone-branch-clone,-bugprone-sizeof-expression,-clang-analyzer-security.insecureAPI.DeprecatedOrUnsafeBufferHandling

# static analysis, about 25 s; silence a finding in place with
# "// cppcheck-suppress <id>" or "// NOLINT(<check>)"
lint:
	cppcheck --quiet -j2 --error-exitcode=1 --inline-suppr \
		--enable=warning,performance,portability \
		--suppress=missingIncludeSystem --suppress=unknownMacro \
		-I$(includedir_server) -D__GNUC__ -D__x86_64__ --max-configs=1 $(LINT_SOURCES)
	clang-tidy --quiet --checks='$(TIDY_CHECKS)' --warnings-as-errors='*' \
		$(LINT_SOURCES) -- $(CPPFLAGS)

# rungate scaled out behind PL/Proxy: a front and 1, 2, 4 shard clusters,
# the acceptance checks through the front (~1 min; docs/scale-out.md).
# make test runs the 2-shard size (test/scripts/scale_out.sh).
.PHONY: test-scaleout
test-scaleout:
	@bash test/scale-out.sh
