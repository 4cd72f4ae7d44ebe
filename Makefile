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
DEPS     = libzstd msgpack libturbojpeg libpng openblas jansson
DEPCFLAGS := $(shell pkg-config --cflags $(DEPS) 2>/dev/null)
DEPLIBS   := $(shell pkg-config --libs $(DEPS) 2>/dev/null || echo -lzstd -lmsgpackc -lturbojpeg -lpng16 -lopenblas -ljansson)
ALL_CFLAGS = $(STD) $(WARN) $(CFLAGS) $(EXTRA_CFLAGS) -pthread -Ilib $(DEPCFLAGS) -MMD -MP
LDLIBS   = $(DEPLIBS) -lz -lm -pthread

LIB_SRC  := $(sort $(wildcard lib/*.c lib/*/*.c))
LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
BIN_SRC  := $(sort $(wildcard bin/*.c))
BINS     := $(patsubst bin/%.c,$(BUILD)/mmp-%,$(BIN_SRC))
TEST_SRC := $(sort $(wildcard tests/test_*.c))
TESTS    := $(patsubst tests/%.c,$(BUILD)/tests/%,$(TEST_SRC))
LIBA     := $(BUILD)/libmmp.a

.SECONDARY:
.PHONY: all test bench install clean fuzz asan demo
all: $(BINS) $(TESTS)

Q = $(if $(V),,@)
$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	@$(if $(V),,echo "  CC $<")
	$(Q)$(CC) $(ALL_CFLAGS) -c $< -o $@

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

test: all
	@BUILD=$(BUILD) bash tests/run.sh

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

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/include/mmp
	install -m 755 $(BINS) $(DESTDIR)$(PREFIX)/bin/
	install -m 644 $(LIBA) $(DESTDIR)$(PREFIX)/lib/
	install -m 644 lib/*.h $(DESTDIR)$(PREFIX)/include/mmp/
	for d in lib/*/; do if ls $$d*.h >/dev/null 2>&1; then install -d $(DESTDIR)$(PREFIX)/include/mmp/$$(basename $$d); install -m 644 $$d*.h $(DESTDIR)$(PREFIX)/include/mmp/$$(basename $$d)/; fi; done
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(shell sed -n 's/^#define MMP_VERSION "\(.*\)"/\1/p' lib/mmp.h)|' \
	    -e 's|@DEPS@|$(DEPS)|' mmp.pc.in > $(DESTDIR)$(PREFIX)/lib/pkgconfig/mmp.pc

clean:
	rm -rf build build-asan build-fuzz

-include $(LIB_OBJ:.o=.d) $(BIN_SRC:%.c=$(BUILD)/obj/%.d) $(TEST_SRC:%.c=$(BUILD)/obj/%.d)
