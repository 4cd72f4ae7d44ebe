/* train/resnet_tail.c: the torchvision ResNet tail builder (see resnet_tail.h). */
#include "train/resnet_tail.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const mmp_tensor *rget(const mmp_safetensors *st, int L, int i, const char *what) {
    char name[96];
    snprintf(name, sizeof name, "layer%d.%d.%s", L, i, what);
    const mmp_tensor *t = mmp_st_get(st, name);
    return t && t->ndim == 4 && (t->dtype == MMP_F32 || t->dtype == MMP_F16 || t->dtype == MMP_BF16) ? t : NULL;
}

int mmp_resnet_parse_layer(const char *s, int *L, int *i) {
    if (strncmp(s, "layer", 5)) return -1;
    const char *p = s + 5;
    if (*p < '1' || *p > '4') return -1;
    *L = *p++ - '0';
    *i = -1;
    if (*p == '.') {
        char *e;
        long v = strtol(p + 1, &e, 10);
        if (e == p + 1 || v < 0 || v > 999) return -1;
        *i = (int)v;
        p = e;
    }
    if (*p && strcmp(p, ":flat")) return -1;
    return 0;
}

int mmp_resnet_nblocks(const mmp_safetensors *src, int L) {
    int n = 0;
    while (n < 1000 && rget(src, L, n, "conv1.weight")) n++;
    return n;
}

int mmp_resnet_next_block(const mmp_safetensors *src, int L, int i, int *tl, int *ti) {
    if (i >= 0 && rget(src, L, i + 1, "conv1.weight")) { /* (a checkpoint holds only the trained blocks) */
        *tl = L;
        *ti = i + 1;
        return 0;
    }
    for (int l = L + 1; l <= 4; l++)
        if (rget(src, l, 0, "conv1.weight")) {
            *tl = l;
            *ti = 0;
            return 0;
        }
    return -1;
}

int64_t mmp_resnet_block_cin(const mmp_safetensors *src, int L, int i) {
    const mmp_tensor *t = rget(src, L, i, "conv1.weight");
    return t ? t->shape[1] : 0;
}

int64_t mmp_resnet_spatial(int64_t s, int L) {
    s = (s + 2 * 3 - 7) / 2 + 1; /* conv1 7x7 s2 p3 */
    s = (s + 2 * 1 - 3) / 2 + 1; /* maxpool 3x3 s2 p1 */
    for (int l = 2; l <= L; l++)
        s = (s - 1) / 2 + 1; /* block 0 of layer2..4: 3x3 (and 1x1) stride 2 */
    return s;
}

static int block_stride(int L, int i) { return L >= 2 && i == 0 ? 2 : 1; }

int mmp_resnet_tail_init(mmp_cnn_tail *t, const mmp_safetensors *src, int L, int i, int64_t H0, int64_t W0,
                         int64_t ncls, int load_fc, char *err, size_t errlen) {
    memset(t, 0, sizeof *t);
    int cap = 0, l, b;
    char w[96], bn[96], e2[400];
    if (L < 0 || L > 4) return mmp_errf(err, errlen, "the input must be the image (layer 0), the output of layer1..layer3 (or a block of layer1..4)");
    if (H0 < 1 || W0 < 1 || H0 > 4096 || W0 > 4096 || ncls < 1)
        return mmp_errf(err, errlen, "bad tail input %lldx%lld or class count %lld", (long long)H0, (long long)W0, (long long)ncls);
    if (L > 0 && i >= 0 && !rget(src, L, i, "conv1.weight") && !rget(src, L, i + 1, "conv1.weight"))
        return mmp_errf(err, errlen, "no block layer%d.%d (layer%d has %d blocks)", L, i, L, mmp_resnet_nblocks(src, L));
    int any = 0;
    for (int k = 1; k <= 4; k++) any |= mmp_resnet_nblocks(src, k) > 0 || rget(src, k, 1, "conv1.weight") != NULL;
    if (!any) return mmp_errf(err, errlen, "not a torchvision ResNet (no blocks layerN.i.conv1.weight)");
    const mmp_tensor *stem = mmp_st_get(src, "conv1.weight");
    if (L == 0 && (!stem || stem->ndim != 4 || stem->shape[2] != 7 || stem->shape[3] != 7))
        return mmp_errf(err, errlen, "no ResNet stem conv1.weight [64,3,7,7] (a 7x7 conv) to train from the image");
    if (L == 0) i = -1;
    if (mmp_resnet_next_block(src, L, i, &l, &b))
        return mmp_errf(err, errlen, "no ResNet block after layer%d%s: nothing to train (embed an earlier layer)", L,
                        i >= 0 ? ".i" : "");
    int64_t c = mmp_resnet_block_cin(src, l, b);
    t->arch = 1;
    t->first = l * 100 + b;
    t->C0 = c;
    t->H0 = H0;
    t->W0 = W0;
    t->ncls = ncls;
    int64_t H = H0, W = W0;
    int in = -1; /* the block input unit */
    if (L == 0) { /* the stem: conv1 7x7 stride 2 pad 3, bn1, relu, maxpool 3x3 stride 2 pad 1 */
        t->first = 0;
        t->C0 = stem->shape[1];
        if (stem->shape[0] != c) goto bad;
        if (mmp_tail_add_unit(t, &cap, src, MMP_TAIL_CONV, 7, "conv1.weight", "bn1", t->C0, c, 2, MMP_ACT_RELU, -1,
                              MMP_TAIL_NOSKIP, H, W, e2, sizeof e2))
            goto fail;
        H = t->u[0].Ho;
        W = t->u[0].Wo;
        if (mmp_tail_add_maxpool(t, c, H, W, e2, sizeof e2)) goto fail;
        H = t->u[1].Ho;
        W = t->u[1].Wo;
        in = 1;
    }
    for (; l <= 4; l++, b = 0) {
        for (; rget(src, l, b, "conv1.weight"); b++) {
            int s = block_stride(l, b);
            int bottleneck = rget(src, l, b, "conv3.weight") != NULL;
            const mmp_tensor *c1 = rget(src, l, b, "conv1.weight");
            if (c1->shape[1] != c) goto bad;
            int skip = in;
            const mmp_tensor *ds = rget(src, l, b, "downsample.0.weight");
            int64_t Hs = (H - 1) / s + 1, Ws = (W - 1) / s + 1;
            int64_t cout = bottleneck ? (rget(src, l, b, "conv3.weight") ? rget(src, l, b, "conv3.weight")->shape[0] : 0)
                                      : (rget(src, l, b, "conv2.weight") ? rget(src, l, b, "conv2.weight")->shape[0] : 0);
            if (cout <= 0) goto bad;
            if (ds) {
                snprintf(w, sizeof w, "layer%d.%d.downsample.0.weight", l, b);
                snprintf(bn, sizeof bn, "layer%d.%d.downsample.1", l, b);
                if (mmp_tail_add_unit(t, &cap, src, MMP_TAIL_CONV, 1, w, bn, c, cout, s, MMP_ACT_NONE, in, MMP_TAIL_NOSKIP, H, W,
                                      e2, sizeof e2))
                    goto fail;
                skip = t->nu - 1;
            } else if (s != 1 || cout != c) {
                goto bad;
            }
            int64_t mid = c1->shape[0];
            snprintf(w, sizeof w, "layer%d.%d.conv1.weight", l, b);
            snprintf(bn, sizeof bn, "layer%d.%d.bn1", l, b);
            if (bottleneck) {
                if (mmp_tail_add_unit(t, &cap, src, MMP_TAIL_CONV, 1, w, bn, c, mid, 1, MMP_ACT_RELU, in, MMP_TAIL_NOSKIP, H, W,
                                      e2, sizeof e2))
                    goto fail;
                const mmp_tensor *c2 = rget(src, l, b, "conv2.weight");
                if (!c2) goto bad;
                snprintf(w, sizeof w, "layer%d.%d.conv2.weight", l, b);
                snprintf(bn, sizeof bn, "layer%d.%d.bn2", l, b);
                if (mmp_tail_add_unit(t, &cap, src, MMP_TAIL_CONV, 3, w, bn, mid, c2->shape[0], s, MMP_ACT_RELU, t->nu - 1,
                                      MMP_TAIL_NOSKIP, H, W, e2, sizeof e2))
                    goto fail;
                snprintf(w, sizeof w, "layer%d.%d.conv3.weight", l, b);
                snprintf(bn, sizeof bn, "layer%d.%d.bn3", l, b);
                if (mmp_tail_add_unit(t, &cap, src, MMP_TAIL_CONV, 1, w, bn, c2->shape[0], cout, 1, MMP_ACT_RELU, t->nu - 1,
                                      skip, Hs, Ws, e2, sizeof e2))
                    goto fail;
            } else {
                if (mmp_tail_add_unit(t, &cap, src, MMP_TAIL_CONV, 3, w, bn, c, mid, s, MMP_ACT_RELU, in, MMP_TAIL_NOSKIP, H, W,
                                      e2, sizeof e2))
                    goto fail;
                snprintf(w, sizeof w, "layer%d.%d.conv2.weight", l, b);
                snprintf(bn, sizeof bn, "layer%d.%d.bn2", l, b);
                if (mmp_tail_add_unit(t, &cap, src, MMP_TAIL_CONV, 3, w, bn, mid, cout, 1, MMP_ACT_RELU, t->nu - 1, skip, Hs,
                                      Ws, e2, sizeof e2))
                    goto fail;
            }
            in = t->nu - 1;
            c = cout;
            H = Hs;
            W = Ws;
            t->last = l * 100 + b;
        }
    }
    t->F = c;
    if (mmp_tail_finish(t, &cap, src, "fc", load_fc, e2, sizeof e2)) goto fail;
    return 0;
bad:
    mmp_tail_free(t);
    return mmp_errf(err, errlen, "layer%d.%d: not a torchvision BasicBlock/Bottleneck (channel counts do not chain)", l, b);
fail:
    mmp_tail_free(t);
    return mmp_errf(err, errlen, "%s", e2);
}
