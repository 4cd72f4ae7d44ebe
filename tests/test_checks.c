/* The policy checks the programs run on their inputs before any work:
 * provenance of features and text embeddings against a model (mmp-eval,
 * mmp-train-step), the normalization of float images against the model
 * (mmp-embed), class lists (mmp-eval, mmp-fuse), header sizes (mmp-eval),
 * in-batch negatives (mmp-train-step), fused fields and a learned
 * checkpoint's provenance (mmp-fuse). Each returns 0 / 1 (warning) / -1. */
#include <string.h>

#include "fuse/check.h"
#include "nn/provenance.h"
#include "testlib.h"
#include "train/train.h"

static void hdr(mmp_header *h, const char *prov, const char *tprov) {
    mmp_header_init(h);
    if (prov) mmp_meta_set(&h->meta, "provenance", prov);
    if (tprov) mmp_meta_set(&h->meta, "text_provenance", tprov);
}

#define EXPECT(call, rc_, text)                                                                           \
    do {                                                                                                  \
        msg[0] = 0;                                                                                       \
        int rc__ = (call);                                                                                \
        CHECKF(rc__ == (rc_) && !strcmp(msg, text), "%s: rc %d '%s', want %d '%s'", #call, rc__, msg, rc_, text); \
    } while (0)

static void test_provenance(void) {
    char msg[1024];
    mmp_header a, none;
    hdr(&a, "mnv2:pool", "minilm-a");
    hdr(&none, NULL, NULL);
    EXPECT(mmp_check_provenance(&a, "mnv2:pool", 0, "t.mmp", "h.st", msg, sizeof msg), 0, "");
    EXPECT(mmp_check_provenance(&none, NULL, 0, "t.mmp", "h.st", msg, sizeof msg), 0, "");
    EXPECT(mmp_check_provenance(&a, "r18:pool", 0, "t.mmp", "h.st", msg, sizeof msg), -1,
           "provenance mismatch: t.mmp has \"mnv2:pool\" but h.st has \"r18:pool\" (embedded with a different model, layer, "
           "input size or normalization; --allow-mixed to proceed anyway)");
    EXPECT(mmp_check_provenance(&a, "r18:pool", 1, "t.mmp", "h.st", msg, sizeof msg), 1,
           "provenance mismatch: t.mmp has \"mnv2:pool\" but h.st has \"r18:pool\" (--allow-mixed)");
    EXPECT(mmp_check_provenance(&none, "r18:pool", 1, "t.mmp", "h.st", msg, sizeof msg), 1,
           "provenance mismatch: t.mmp has \"(none)\" but h.st has \"r18:pool\" (--allow-mixed)");
    /* text embeddings: checked only when both sides state one */
    EXPECT(mmp_check_text_provenance(&a, "minilm-a", 0, "t.mmp", "h.st", msg, sizeof msg), 0, "");
    EXPECT(mmp_check_text_provenance(&none, "minilm-b", 0, "t.mmp", "h.st", msg, sizeof msg), 0, "");
    EXPECT(mmp_check_text_provenance(&a, NULL, 0, "t.mmp", "h.st", msg, sizeof msg), 0, "");
    EXPECT(mmp_check_text_provenance(&a, "minilm-b", 1, "t.mmp", "h.st", msg, sizeof msg), 1,
           "provenance mismatch: t.mmp (text embeddings) has \"minilm-a\" but h.st has \"minilm-b\" (--allow-mixed)");
    CHECK(mmp_check_text_provenance(&a, "minilm-b", 0, "t.mmp", "h.st", msg, sizeof msg) == -1 && strstr(msg, "--allow-mixed to proceed"));
    mmp_header_free(&a);
    mmp_header_free(&none);
}

static void test_normalization(void) {
    char msg[1024];
    const float im_mean[3] = {0.485f, 0.456f, 0.406f}, im_std[3] = {0.229f, 0.224f, 0.225f};
    float mean[3], std[3];
    mmp_header h, none;
    mmp_header_init(&h);
    mmp_header_init(&none);
    mmp_meta_set(&h.meta, "image.mean", "0.485000002,0.456,0.40600001");
    mmp_meta_set(&h.meta, "image.std", "0.229,0.224,0.225");
#define RESET() (memcpy(mean, im_mean, sizeof mean), memcpy(std, im_std, sizeof std))
    RESET();
    EXPECT(mmp_check_normalization(&h, mean, std, 0, "a.mmp", "m.st", msg, sizeof msg), 0, "");
    mmp_meta_set(&h.meta, "image.mean", "0.5,0.5,0.5");
    mmp_meta_set(&h.meta, "image.std", "0.5,0.5,0.5");
    RESET();
    EXPECT(mmp_check_normalization(&h, mean, std, 0, "a.mmp", "m.st", msg, sizeof msg), -1,
           "a.mmp: images normalized with mean 0.5,0.5,0.5 std 0.5,0.5,0.5 but m.st expects mean 0.485,0.456,0.406 "
           "std 0.229,0.224,0.225 (--allow-mixed to embed anyway)");
    CHECK(mean[0] == im_mean[0] && std[2] == im_std[2]);
    RESET();
    EXPECT(mmp_check_normalization(&h, mean, std, 1, "a.mmp", "m.st", msg, sizeof msg), 1,
           "a.mmp: images normalized with mean 0.5,0.5,0.5 std 0.5,0.5,0.5, m.st expects mean 0.485,0.456,0.406 "
           "std 0.229,0.224,0.225 (--allow-mixed)");
    CHECK(mean[0] == 0.5f && mean[2] == 0.5f && std[1] == 0.5f); /* undone with what the stream was made with */
    RESET();
    EXPECT(mmp_check_normalization(&none, mean, std, 1, "a.mmp", "m.st", msg, sizeof msg), 1,
           "a.mmp: images normalized with mean (unknown) std (unknown), m.st expects mean 0.485,0.456,0.406 "
           "std 0.229,0.224,0.225 (--allow-mixed)");
    CHECK(mean[0] == im_mean[0]); /* kept: nothing better is known */
    mmp_header_free(&h);
    mmp_header_free(&none);
}

static void test_classes_and_header(void) {
    char msg[1024];
    char *abc[] = {"ant", "bee", "cat"}, *abd[] = {"ant", "bee", "dog"};
    mmp_header h, none;
    mmp_header_init(&h);
    mmp_header_init(&none);
    mmp_header_set_classes(&h, 3, abc);
    EXPECT(mmp_check_classes(&h, 3, abc, "t.mmp", "h.st", msg, sizeof msg), 0, "");
    EXPECT(mmp_check_classes(&none, 3, abc, "t.mmp", "h.st", msg, sizeof msg), 0, "");
    EXPECT(mmp_check_classes(&h, 0, NULL, "t.mmp", "h.st", msg, sizeof msg), 0, "");
    EXPECT(mmp_check_classes(&h, 3, abd, "t.mmp", "h.st", msg, sizeof msg), -1,
           "t.mmp: the class list differs from the model's (3 classes, first \"ant\"; model h.st: 3, first \"ant\")");
    EXPECT(mmp_check_classes(&h, 2, abd + 1, "t.mmp", "h.st", msg, sizeof msg), -1,
           "t.mmp: the class list differs from the model's (3 classes, first \"ant\"; model h.st: 2, first \"bee\")");

    /* header sizes against a model, in-batch negatives */
    mmp_trainer tr;
    memset(&tr, 0, sizeof tr);
    tr.in_dim = 8;
    tr.pair_dim = 4;
    snprintf(tr.feature, sizeof tr.feature, "embedding");
    snprintf(tr.pair_field, sizeof tr.pair_field, "text_embedding");
    tr.cfg.head = MMP_HEAD_GATED;
    int64_t s8[1] = {8}, s5[1] = {5}, any[1] = {-1};
    mmp_header_add_field(&h, "embedding", MMP_F32, 1, s8);
    mmp_header_add_field(&h, "text_embedding", MMP_F32, 1, any);
    EXPECT(mmp_trainer_check_header(&tr, &h, "t.mmp", msg, sizeof msg), 0, "");
    mmp_header_add_field(&h, "text_embedding", MMP_F16, 1, s5);
    EXPECT(mmp_trainer_check_header(&tr, &h, "t.mmp", msg, sizeof msg), -1, "t.mmp: \"text_embedding\" has 5 values, the model expects 4");
    tr.cfg.head = MMP_HEAD_LINEAR; /* the pair field is not an input */
    EXPECT(mmp_trainer_check_header(&tr, &h, "t.mmp", msg, sizeof msg), 0, "");
    tr.in_dim = 16;
    EXPECT(mmp_trainer_check_header(&tr, &h, "t.mmp", msg, sizeof msg), -1, "t.mmp: \"embedding\" has 8 values, the model expects 16");
    mmp_dataset ds;
    memset(&ds, 0, sizeof ds);
    snprintf(ds.name, sizeof ds.name, "p.mmp");
    ds.n = 1;
    tr.cfg.head = MMP_HEAD_PAIR;
    tr.cfg.loss = MMP_LOSS_CONTRASTIVE;
    tr.cfg.batch = 64;
    EXPECT(mmp_trainer_check_batches(&tr, &ds, msg, sizeof msg), -1,
           "p.mmp: --loss contrastive needs in-batch negatives: at least 2 records and --batch-size >= 2");
    ds.n = 2;
    EXPECT(mmp_trainer_check_batches(&tr, &ds, msg, sizeof msg), 0, "");
    tr.cfg.batch = 1;
    CHECK(mmp_trainer_check_batches(&tr, &ds, msg, sizeof msg) == -1);
    tr.cfg.head = MMP_HEAD_LINEAR;
    EXPECT(mmp_trainer_check_batches(&tr, &ds, msg, sizeof msg), 0, "");
    mmp_header_free(&h);
    mmp_header_free(&none);
}

static void test_fuse(void) {
    char msg[1024];
    mmp_header a, b;
    hdr(&a, "mnv2:pool", NULL);
    hdr(&b, "mnv2:pool", "minilm");
    mmp_meta_set(&b.meta, "text.field", "text_embedding");
    int64_t s8[1] = {8}, any[1] = {-1}, s23[2] = {2, 3};
    mmp_header_add_field(&a, "embedding", MMP_F16, 1, s8);
    mmp_header_add_field(&a, "varying", MMP_F32, 1, any);
    mmp_header_add_field(&a, "ids", MMP_I64, 1, s8);
    mmp_header_add_field(&a, "grid", MMP_F32, 2, s23);
    EXPECT(mmp_fuse_field_dim(&a, "embedding", "a.mmp", msg, sizeof msg), 8, "");
    EXPECT(mmp_fuse_field_dim(&a, "nope", "a.mmp", msg, sizeof msg), -1, "a.mmp: no field 'nope' in the stream (fields: embedding, varying, ids, grid)");
    EXPECT(mmp_fuse_field_dim(&b, "nope", "b.mmp", msg, sizeof msg), -1, "b.mmp: no field 'nope' in the stream (fields: none)");
    EXPECT(mmp_fuse_field_dim(&a, "varying", "a.mmp", msg, sizeof msg), -1, "a.mmp: field 'varying' is not a fixed-size vector");
    EXPECT(mmp_fuse_field_dim(&a, "grid", "a.mmp", msg, sizeof msg), -1, "a.mmp: field 'grid' is not a fixed-size vector");
    EXPECT(mmp_fuse_field_dim(&a, "ids", "a.mmp", msg, sizeof msg), -1, "a.mmp: field 'ids' is i64, not a float vector");
    CHECK(!strcmp(mmp_fuse_side_provenance(&b, "text_embedding"), "minilm"));
    CHECK(!strcmp(mmp_fuse_side_provenance(&b, "embedding"), "mnv2:pool"));
    mmp_header c;
    hdr(&c, NULL, "minilm");
    CHECK(!strcmp(mmp_fuse_side_provenance(&c, "text_embedding"), "unknown")); /* no text.field */
    EXPECT(mmp_check_fuse_provenance(NULL, "x", 0, "a.mmp", "embedding", "g.st", msg, sizeof msg), 0, "");
    EXPECT(mmp_check_fuse_provenance("x", "x", 0, "a.mmp", "embedding", "g.st", msg, sizeof msg), 0, "");
    EXPECT(mmp_check_fuse_provenance("x", "y", 0, "a.mmp", "embedding", "g.st", msg, sizeof msg), -1,
           "provenance mismatch: a.mmp (embedding) has \"y\" but g.st was trained on \"x\" (--allow-mixed to proceed anyway)");
    EXPECT(mmp_check_fuse_provenance("x", "y", 1, "a.mmp", "embedding", "g.st", msg, sizeof msg), 1,
           "provenance mismatch: a.mmp (embedding) has \"y\" but g.st was trained on \"x\"");
    char *ab[] = {"a", "b"}, *ac[] = {"a", "c"};
    EXPECT(mmp_check_same_classes(&a, &b, "a.mmp", "b.mmp", msg, sizeof msg), 0, "");
    mmp_header_set_classes(&a, 2, ab);
    EXPECT(mmp_check_same_classes(&a, &b, "a.mmp", "b.mmp", msg, sizeof msg), 0, ""); /* b has none */
    mmp_header_set_classes(&b, 2, ab);
    EXPECT(mmp_check_same_classes(&a, &b, "a.mmp", "b.mmp", msg, sizeof msg), 0, "");
    mmp_header_set_classes(&b, 2, ac);
    EXPECT(mmp_check_same_classes(&a, &b, "a.mmp", "b.mmp", msg, sizeof msg), -1, "a.mmp and b.mmp have different class lists");
    mmp_header_set_classes(&b, 1, ab);
    EXPECT(mmp_check_same_classes(&a, &b, "a.mmp", "b.mmp", msg, sizeof msg), -1, "a.mmp and b.mmp have different class lists");
    mmp_header_free(&a);
    mmp_header_free(&b);
    mmp_header_free(&c);
}

int main(void) {
    test_provenance();
    test_normalization();
    test_classes_and_header();
    test_fuse();
    TEST_END();
}
