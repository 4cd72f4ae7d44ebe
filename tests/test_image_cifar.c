/* Real data: a slice of the shared CIFAR-10 test tar (every 25th image),
 * decoded by the library, must equal PIL's decode of the same JPEGs, and
 * --size 224 / 20 must equal torchvision Resize+CenterCrop on them.
 * Skips when the shared data or a Python with PIL + torchvision is absent. */
#include "image/image.h"
#include "image/source.h"
#include "mmp.h"
#include "testlib.h"

#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

static const char *script =
    "import sys, tarfile, io\n"
    "import numpy as np\n"
    "from PIL import Image\n"
    "import torchvision.transforms as T\n"
    "tar, step = sys.argv[1], int(sys.argv[2])\n"
    "ids = open('ids.txt').read().split('\\n')[:-1]\n"
    "ours = {k: open(f'ours{k}.bin', 'rb').read() for k in ['', '224', '20']}\n"
    "off = {k: 0 for k in ours}\n"
    "n = bad = 0\n"
    "with tarfile.open(tar) as tf:\n"
    "    i = 0\n"
    "    for m in tf:\n"
    "        if not m.isfile() or not m.name.lower().endswith(('.jpg', '.jpeg', '.png')): continue\n"
    "        if i % step == 0:\n"
    "            assert ids[n] == m.name, (ids[n], m.name)\n"
    "            im = Image.open(io.BytesIO(tf.extractfile(m).read())).convert('RGB')\n"
    "            for k, img in [('', im), ('224', T.Compose([T.Resize(224), T.CenterCrop(224)])(im)),\n"
    "                           ('20', T.Compose([T.Resize(20), T.CenterCrop(20)])(im))]:\n"
    "                b = np.asarray(img).tobytes()\n"
    "                if ours[k][off[k]:off[k] + len(b)] != b: bad += 1; print('differs', k, m.name)\n"
    "                off[k] += len(b)\n"
    "            n += 1\n"
    "        i += 1\n"
    "assert n == len(ids), (n, len(ids))\n"
    "import glob, os\n"
    "samples = sorted(glob.glob(os.path.join(sys.argv[3], '*.jpg')))\n"
    "sb = open('samples.bin', 'rb').read(); so = 0\n"
    "for p in samples:\n"
    "    im = Image.open(p).convert('RGB')\n"
    "    for img in [im, T.Compose([T.Resize(224), T.CenterCrop(224)])(im), im.resize((300, 200), Image.BILINEAR)]:\n"
    "        b = np.asarray(img).tobytes()\n"
    "        if sb[so:so + len(b)] != b: bad += 1; print('differs', p, img.size)\n"
    "        so += len(b)\n"
    "print(f'{len(samples)} photos x 3 (decode, Resize+CenterCrop 224, resize 300x200)')\n"
    "print(f'{n} images x 3 (decode, Resize+CenterCrop 224, 20): {bad} differ from PIL/torchvision')\n"
    "sys.exit(1 if bad else 0)\n";

int main(void) {
    mmp_set_progname("test_image_cifar");
    const char *shared = t_shared();
    if (!shared) SKIP("no shared data (MMP_SHARED)");
    char tar[4096];
    snprintf(tar, sizeof tar, "%s/datasets/cifar10/test.tar", shared);
    FILE *tf = fopen(tar, "rb");
    if (!tf) SKIP("no %s", tar);
    fclose(tf);
    const char *py = getenv("MMP_PYTHON");
    if (!py || !*py) py = "/usr/bin/python3";
    char cmd[16384];
    snprintf(cmd, sizeof cmd, "'%s' -c 'import PIL, torchvision, numpy' 2>/dev/null", py);
    int st = system(cmd);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) SKIP("no python with PIL + torchvision (%s)", py);

    const int step = 25;
    char *in[] = {tar};
    mmp_src_opts o = {.shard_i = 0, .shard_n = step};
    char err[512];
    mmp_src *s = mmp_src_open(1, in, &o, err, sizeof err);
    CHECKF(s != NULL, "%s", err);
    if (!s) TEST_END();
    CHECK(mmp_src_nclasses(s) == 10 && !strcmp(mmp_src_classes(s)[0], "airplane") &&
          !strcmp(mmp_src_classes(s)[9], "truck"));
    FILE *ids = fopen("ids.txt", "w"), *o0 = fopen("ours.bin", "wb"), *o1 = fopen("ours224.bin", "wb"),
         *o2 = fopen("ours20.bin", "wb");
    mmp_img_decoder *d = mmp_img_decoder_new();
    mmp_src_item it = {0};
    int n = 0, r;
    int64_t lastlabel = -1;
    while ((r = mmp_src_next(s, &it)) == 1) {
        CHECKF(!it.err[0], "%s: %s", it.id, it.err);
        mmp_img im, a, b;
        if (mmp_img_decode(d, it.data, it.n, NULL, &im, err, sizeof err)) {
            CHECKF(0, "%s: %s", it.id, err);
            continue;
        }
        CHECK(im.w == 32 && im.h == 32);
        CHECK(it.label >= lastlabel); /* tar is class-sorted */
        lastlabel = it.label;
        mmp_img_resize_center_crop(&im, 224, &a);
        mmp_img_resize_center_crop(&im, 20, &b);
        fprintf(ids, "%s\n", it.id);
        fwrite(im.px, 1, (size_t)im.w * im.h * 3, o0);
        fwrite(a.px, 1, 224 * 224 * 3, o1);
        fwrite(b.px, 1, 20 * 20 * 3, o2);
        mmp_img_free(&im);
        mmp_img_free(&a);
        mmp_img_free(&b);
        n++;
    }
    CHECKF(r == 0, "%s", mmp_src_error(s));
    CHECK(n == 10000 / step);
    CHECK(lastlabel == 9);
    fclose(ids);
    fclose(o0);
    fclose(o1);
    fclose(o2);
    mmp_src_item_clear(&it);
    mmp_src_close(s);
    mmp_img_decoder_free(d);
    /* the shared sample photos (large JPEGs: strong antialiased downscales) */
    char sdir[4096];
    snprintf(sdir, sizeof sdir, "%s/models/samples", shared);
    const char *photos[] = {"cat_720p.jpg", "hot_dog.jpg", "parrot.jpg"};
    FILE *sb = fopen("samples.bin", "wb");
    for (int i = 0; i < 3; i++) {
        char p[4200];
        snprintf(p, sizeof p, "%s/%s", sdir, photos[i]);
        FILE *f = fopen(p, "rb");
        CHECKF(f != NULL, "missing %s", p);
        if (!f) continue;
        fseek(f, 0, SEEK_END);
        long sz = ftell(f);
        fseek(f, 0, SEEK_SET);
        uint8_t *buf = malloc((size_t)sz);
        CHECK(fread(buf, 1, (size_t)sz, f) == (size_t)sz);
        fclose(f);
        mmp_img im, a, b;
        mmp_img_decoder *d2 = mmp_img_decoder_new();
        CHECK(mmp_img_decode(d2, buf, (size_t)sz, NULL, &im, err, sizeof err) == 0);
        mmp_img_decoder_free(d2);
        free(buf);
        mmp_img_resize_center_crop(&im, 224, &a);
        mmp_img_resize(&im, 300, 200, &b);
        fwrite(im.px, 1, (size_t)im.w * im.h * 3, sb);
        fwrite(a.px, 1, (size_t)a.w * a.h * 3, sb);
        fwrite(b.px, 1, (size_t)b.w * b.h * 3, sb);
        mmp_img_free(&im);
        mmp_img_free(&a);
        mmp_img_free(&b);
    }
    fclose(sb);
    FILE *sf = fopen("cmp.py", "w");
    fputs(script, sf);
    fclose(sf);
    snprintf(cmd, sizeof cmd, "'%s' cmp.py '%s' %d '%s'", py, tar, step, sdir);
    st = system(cmd);
    CHECKF(WIFEXITED(st) && WEXITSTATUS(st) == 0, "PIL/torchvision comparison failed");
    TEST_END();
}
