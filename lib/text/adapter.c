/* text/adapter.c: a PEFT LoRA adapter on mmp-embed-text's encoder (BERT or
 * a CLIP text tower), run unmerged (tx/peft.h). */
#include "text/embed.h"
#include "tx/peft.h"

mmp_lora *mmp_text_encoder_adapter(mmp_text_encoder *e, const char *dir, char *err, size_t errlen) {
    if (e->clip) return mmp_lora_attach_model(e->clip, dir, err, errlen);
    mmp_bert *b = &e->bert->bert;
    mmp_lora *a = mmp_lora_load(dir, b->path, b->sha256, err, errlen);
    if (!a) return NULL;
    if (mmp_lora_attach(a, 0, (mmp_tx_encoder *)b->tx, err, errlen)) {
        mmp_lora_free(a);
        return NULL;
    }
    return a;
}
