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
DEPS     = libzstd msgpack libturbojpeg libpng openblas jansson libarchive zlib
DEPCFLAGS := $(shell pkg-config --cflags $(DEPS) 2>/dev/null)
DEPLIBS   := $(shell pkg-config --libs $(DEPS) 2>/dev/null || echo -lzstd -lmsgpackc -lturbojpeg -lpng16 -lopenblas -ljansson -larchive -lz)
ALL_CFLAGS = $(STD) $(WARN) $(CFLAGS) $(EXTRA_CFLAGS) -pthread -Ilib $(DEPCFLAGS) -MMD -MP
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
.PHONY: all test bench install clean fuzz asan demo shared ldlibs
all: $(BINS) $(TESTS)

Q = $(if $(V),,@)
$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	@$(if $(V),,echo "  CC $<")
	$(Q)$(CC) $(ALL_CFLAGS) -c $< -o $@

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
# include/mmp/ (PUBLIC_HEADERS only), lib/pkgconfig/mmp.pc.
install: all $(SOLIB)
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

clean:
	rm -rf build build-asan build-fuzz

-include $(LIB_OBJ:.o=.d) $(PIC_OBJ:.o=.d) $(BIN_SRC:%.c=$(BUILD)/obj/%.d) $(TEST_SRC:%.c=$(BUILD)/obj/%.d)
