# mmpipe — make, make test, make bench, make install PREFIX=...
# Sources are found by wildcard: lib/**.c -> libmmp.a, bin/NAME.c -> build/mmp-NAME,
# tests/test_*.c -> build/tests/test_* (each linked with libmmp).

CC      ?= cc
PREFIX  ?= /usr/local
BUILD   ?= build
OPT     ?= -O3 -march=x86-64-v3 -mtune=generic
CFLAGS  ?= $(OPT) -g
WARN     = -Wall -Wextra -Werror -Wno-unused-parameter
STD      = -std=c11 -D_GNU_SOURCE
DEPS     = libzstd msgpack libturbojpeg libpng jansson libarchive zlib
DEPCFLAGS := $(shell pkg-config --cflags $(DEPS) 2>/dev/null)
DEPLIBS   := $(shell pkg-config --libs $(DEPS) 2>/dev/null || echo -lzstd -lmsgpackc -lturbojpeg -lpng16 -ljansson -larchive -lz)
ALL_CFLAGS = $(STD) $(WARN) $(CFLAGS) $(EXTRA_ISA) $(EXTRA_CFLAGS) -pthread -Ilib $(DEPCFLAGS) -MMD -MP
LDLIBS   = $(DEPLIBS) -lz -lm -pthread

LIB_SRC  := $(sort $(wildcard lib/*.c lib/*/*.c))
LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
BIN_SRC  := $(sort $(wildcard bin/*.c))
BINS     := $(patsubst bin/%.c,$(BUILD)/mmp-%,$(BIN_SRC))
TEST_SRC := $(sort $(wildcard tests/test_*.c))
TESTS    := $(patsubst tests/%.c,$(BUILD)/tests/%,$(TEST_SRC))
LIBA     := $(BUILD)/libmmp.a
# The shared library: position-independent objects of their own (the static
# library and the programs keep theirs, so their code and results are the
# same whether or not a shared library is built), soname libmmp.so.SOVERSION.
VERSION   := $(shell sed -n 's/^\#define MMP_VERSION "\(.*\)"/\1/p' lib/mmp.h)
SOVERSION := $(shell sed -n 's/^\#define MMP_SOVERSION \([0-9]*\)/\1/p' lib/mmp.h)
PIC_OBJ  := $(LIB_SRC:%.c=$(BUILD)/pic/%.o)
SOLIB    := $(BUILD)/libmmp.so.$(VERSION)
# The public API, chosen on purpose: installed under include/mmp/ with their
# folders. Every other header in lib/ is internal and is not installed.
PUBLIC_HEADERS := lib/mmp.h lib/image/image.h lib/nn/nn.h lib/nn/ops.h

.SECONDARY:
.PHONY: all test bench install clean fuzz asan demo shared ldlibs man completion
all: $(BINS) $(TESTS)

Q = $(if $(V),,@)
$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	@$(if $(V),,echo "  CC $<")
	$(Q)$(CC) $(ALL_CFLAGS) -c $< -o $@

# Kernels for one instruction-set level (lib/cpu.h): *_avx512.c files are
# compiled for AVX-512 and called only after mmp_cpu_isa() says so; *_avx2.c
# files for AVX2/FMA (the lowest level) even in builds whose OPT has no -march
# (make asan), so those test the same kernels.
ISA_AVX512 = -mavx512f -mavx512bw -mavx512vl -mavx512dq -mfma
ISA_AVX2   = -mavx2 -mfma
$(BUILD)/obj/%_avx512.o $(BUILD)/pic/%_avx512.o: EXTRA_ISA = $(ISA_AVX512)
$(BUILD)/obj/%_avx2.o $(BUILD)/pic/%_avx2.o: EXTRA_ISA = $(ISA_AVX2)

$(BUILD)/pic/%.o: %.c
	@mkdir -p $(dir $@)
	@$(if $(V),,echo "  CC -fPIC $<")
	$(Q)$(CC) $(ALL_CFLAGS) -fPIC -c $< -o $@

$(SOLIB): $(PIC_OBJ)
	@$(if $(V),,echo "  LD $@")
	$(Q)$(CC) $(ALL_CFLAGS) -shared -Wl,-soname,libmmp.so.$(SOVERSION) -Wl,--as-needed -Wl,-z,defs -o $@ $^ $(LDLIBS)
	$(Q)ln -sf $(notdir $@) $(BUILD)/libmmp.so.$(SOVERSION)
	$(Q)ln -sf libmmp.so.$(SOVERSION) $(BUILD)/libmmp.so

shared: $(SOLIB)

# The libraries a program linked with libmmp.a needs (bench/ scripts use it).
ldlibs:
	@echo $(LDLIBS)

$(LIBA): $(LIB_OBJ)
	@rm -f $@
	$(Q)ar rcs $@ $^

$(BUILD)/mmp-%: $(BUILD)/obj/bin/%.o $(LIBA)
	@$(if $(V),,echo "  LD $@")
	$(Q)$(CC) $(ALL_CFLAGS) -o $@ $< $(LIBA) $(LDLIBS)

$(BUILD)/tests/%: $(BUILD)/obj/tests/%.o $(LIBA)
	@mkdir -p $(dir $@)
	@$(if $(V),,echo "  LD $@")
	$(Q)$(CC) $(ALL_CFLAGS) -o $@ $< $(LIBA) $(LDLIBS)

# Man pages and bash/zsh completion, generated from each program's option
# table (the table its --help is made from): the program run with
# MMP_CLI_DUMP=1 prints it (lib/cli.h), scripts/gen-man.sh and
# scripts/gen-completion.sh (sh + awk: scripts/*.awk) turn it into roff and shell code.
MANS     := $(patsubst bin/%.c,$(BUILD)/man/mmp-%.1,$(BIN_SRC))
BASHCOMP := $(patsubst bin/%.c,$(BUILD)/completion/bash/mmp-%,$(BIN_SRC))
ZSHCOMP  := $(patsubst bin/%.c,$(BUILD)/completion/zsh/_mmp-%,$(BIN_SRC))
man: $(MANS)
completion: $(BASHCOMP) $(ZSHCOMP)

$(BUILD)/cli/mmp-%.tab: $(BUILD)/mmp-%
	@mkdir -p $(dir $@)
	$(Q)MMP_CLI_DUMP=1 $< > $@.tmp && mv $@.tmp $@

$(BUILD)/man/mmp-%.1: $(BUILD)/cli/mmp-%.tab scripts/gen-man.sh scripts/gen-man.awk scripts/cli-table.awk
	@mkdir -p $(dir $@)
	@$(if $(V),,echo "  MAN $@")
	$(Q)sh scripts/gen-man.sh < $< > $@.tmp && mv $@.tmp $@

$(BUILD)/completion/bash/mmp-%: $(BUILD)/cli/mmp-%.tab scripts/gen-completion.sh scripts/gen-completion.awk scripts/cli-table.awk
	@mkdir -p $(dir $@)
	$(Q)sh scripts/gen-completion.sh bash < $< > $@.tmp && mv $@.tmp $@

$(BUILD)/completion/zsh/_mmp-%: $(BUILD)/cli/mmp-%.tab scripts/gen-completion.sh scripts/gen-completion.awk scripts/cli-table.awk
	@mkdir -p $(dir $@)
	$(Q)sh scripts/gen-completion.sh zsh < $< > $@.tmp && mv $@.tmp $@

# The suite gets the build's flags, for the test that builds and installs the library.
test: all
	@BUILD=$(BUILD) MMP_OPT='$(OPT)' MMP_EXTRA_CFLAGS='$(EXTRA_CFLAGS)' MMP_CC='$(CC)' bash tests/run.sh

# AddressSanitizer + UndefinedBehaviorSanitizer build of everything, then the suite.
asan:
	$(MAKE) BUILD=build-asan OPT="-O1" EXTRA_CFLAGS="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer" test

FUZZ_SRC := $(sort $(wildcard tests/fuzz/fuzz_*.c))
FUZZERS  := $(patsubst tests/fuzz/%.c,$(BUILD)/fuzz/%,$(FUZZ_SRC))
fuzz:
	$(MAKE) BUILD=build-fuzz CC=clang OPT="-O1" EXTRA_CFLAGS="-fsanitize=address,undefined,fuzzer-no-link" build-fuzz/libmmp.a
	@mkdir -p build-fuzz/fuzz
	@for f in $(FUZZ_SRC); do n=$$(basename $$f .c); \
	  echo "clang $$f"; clang $(STD) $(WARN) -O1 -g -fsanitize=address,undefined,fuzzer -Ilib $(DEPCFLAGS) -o build-fuzz/fuzz/$$n $$f build-fuzz/libmmp.a $(LDLIBS) || exit 1; done

bench: all
	bash bench/run.sh

demo: all
	bash pipelines/demo

# bin/, lib/ (libmmp.a, libmmp.so.VERSION + its soname and dev links),
# include/mmp/ (PUBLIC_HEADERS only), lib/pkgconfig/mmp.pc,
# share/man/man1/mmp-NAME.1, share/bash-completion/completions/mmp-NAME,
# share/zsh/site-functions/_mmp-NAME.
install: all $(SOLIB) man completion
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/include/mmp
	install -m 755 $(BINS) $(DESTDIR)$(PREFIX)/bin/
	install -m 644 $(LIBA) $(DESTDIR)$(PREFIX)/lib/
	install -m 755 $(SOLIB) $(DESTDIR)$(PREFIX)/lib/
	ln -sf libmmp.so.$(VERSION) $(DESTDIR)$(PREFIX)/lib/libmmp.so.$(SOVERSION)
	ln -sf libmmp.so.$(SOVERSION) $(DESTDIR)$(PREFIX)/lib/libmmp.so
	for h in $(PUBLIC_HEADERS); do d=$$(dirname $${h#lib/}); install -d $(DESTDIR)$(PREFIX)/include/mmp/$$d; \
	  install -m 644 $$h $(DESTDIR)$(PREFIX)/include/mmp/$$d/; done
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(VERSION)|' \
	    -e 's|@DEPS@|$(DEPS)|' mmp.pc.in > $(DESTDIR)$(PREFIX)/lib/pkgconfig/mmp.pc
	install -d $(DESTDIR)$(PREFIX)/share/man/man1 $(DESTDIR)$(PREFIX)/share/bash-completion/completions \
	  $(DESTDIR)$(PREFIX)/share/zsh/site-functions
	install -m 644 $(MANS) $(DESTDIR)$(PREFIX)/share/man/man1/
	install -m 644 $(BASHCOMP) $(DESTDIR)$(PREFIX)/share/bash-completion/completions/
	install -m 644 $(ZSHCOMP) $(DESTDIR)$(PREFIX)/share/zsh/site-functions/

clean:
	rm -rf build build-asan build-fuzz

-include $(LIB_OBJ:.o=.d) $(PIC_OBJ:.o=.d) $(BIN_SRC:%.c=$(BUILD)/obj/%.d) $(TEST_SRC:%.c=$(BUILD)/obj/%.d)
