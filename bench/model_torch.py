"""The UniAD reconstruction model written with torch.nn, as the reference implementation
writes it (nn.MultiheadAttention, sequence-first, post-norm), for the speed comparison.
Same sizes, jitter, dropout, masks, loss, clipping and AdamW as bench_model.

Usage: /usr/bin/python3 bench/model_torch.py --threads N [--batch B] [--steps S]
Prints one JSON object like bench_model does.
"""
import argparse
import json
import time

import torch
from torch import nn


def neighbor_mask(h, w, window):
    half = window // 2
    r = torch.arange(h).repeat_interleave(w)
    c = torch.arange(w).repeat(h)
    inside = ((r[:, None] - r[None, :]).abs() <= half) & ((c[:, None] - c[None, :]).abs() <= half)
    return torch.zeros(h * w, h * w).masked_fill(inside, float("-inf"))


class EncoderLayer(nn.Module):
    def __init__(self, d, heads, ff, dropout):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d, heads, dropout=dropout)
        self.linear1, self.linear2 = nn.Linear(d, ff), nn.Linear(ff, d)
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.drop = nn.Dropout(dropout)

    def forward(self, src, pos, mask):
        q = src + pos
        src = self.norm1(src + self.drop(self.self_attn(q, q, src, attn_mask=mask)[0]))
        return self.norm2(src + self.drop(self.linear2(self.drop(torch.relu(self.linear1(src))))))


class DecoderLayer(nn.Module):
    def __init__(self, d, heads, ff, dropout, tokens):
        super().__init__()
        self.learned_embed = nn.Embedding(tokens, d)
        self.self_attn = nn.MultiheadAttention(d, heads, dropout=dropout)
        self.multihead_attn = nn.MultiheadAttention(d, heads, dropout=dropout)
        self.linear1, self.linear2 = nn.Linear(d, ff), nn.Linear(ff, d)
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(d), nn.LayerNorm(d), nn.LayerNorm(d)
        self.drop = nn.Dropout(dropout)

    def forward(self, out, memory, pos, mask):
        tgt = self.learned_embed.weight.unsqueeze(1).repeat(1, memory.shape[1], 1)
        tgt = self.norm1(tgt + self.drop(self.self_attn(tgt + pos, memory + pos, memory, attn_mask=mask)[0]))
        tgt = self.norm2(tgt + self.drop(self.multihead_attn(tgt + pos, out + pos, out, attn_mask=mask)[0]))
        return self.norm3(tgt + self.drop(self.linear2(self.drop(torch.relu(self.linear1(tgt))))))


class UniAD(nn.Module):
    def __init__(self, c=272, h=14, w=14, d=256, heads=8, ff=1024, layers=4, dropout=0.1, scale=20.0):
        super().__init__()
        self.h, self.w, self.scale = h, w, scale
        self.input_proj, self.output_proj = nn.Linear(c, d), nn.Linear(d, c)
        self.row_embed, self.col_embed = nn.Embedding(h, d // 2), nn.Embedding(w, d // 2)
        self.encoder = nn.ModuleList([EncoderLayer(d, heads, ff, dropout) for _ in range(layers)])
        self.decoder = nn.ModuleList([DecoderLayer(d, heads, ff, dropout, h * w) for _ in range(layers)])
        self.norm = nn.LayerNorm(d)
        self.register_buffer("mask", neighbor_mask(h, w, 7))

    def forward(self, x):
        b, c = x.shape[:2]
        tokens = x.flatten(2).permute(2, 0, 1)  # [T, B, C]
        if self.training:
            tokens = tokens + torch.randn_like(tokens) * tokens.norm(dim=2, keepdim=True) / c * self.scale
        pos = torch.cat([self.col_embed.weight.unsqueeze(0).repeat(self.h, 1, 1),
                         self.row_embed.weight.unsqueeze(1).repeat(1, self.w, 1)], -1).flatten(0, 1).unsqueeze(1)
        memory = self.input_proj(tokens)
        for layer in self.encoder:
            memory = layer(memory, pos, self.mask)
        out = memory
        for layer in self.decoder:
            out = layer(out, memory, pos, self.mask)
        rec = self.output_proj(self.norm(out))
        return rec.permute(1, 2, 0).reshape(b, c, self.h, self.w)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = UniAD()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=1e-4)
    x = torch.randn(args.batch, 272, 14, 14)
    warmup = 2
    model.train()
    train = 0.0
    for step in range(warmup + args.steps):
        t = time.perf_counter()
        loss = nn.functional.mse_loss(model(x), x)
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 0.1)
        opt.step()
        if step >= warmup:
            train += time.perf_counter() - t
    model.eval()
    evaluation = 0.0
    with torch.no_grad():
        for step in range(warmup + args.steps):
            t = time.perf_counter()
            model(x)
            if step >= warmup:
                evaluation += time.perf_counter() - t
    print(json.dumps({"impl": "torch.nn (python)", "model": "uniad", "threads": args.threads, "batch": args.batch,
                      "steps": args.steps, "parameters": sum(p.numel() for p in model.parameters()),
                      "train_samples_per_s": round(args.steps * args.batch / train, 3),
                      "eval_samples_per_s": round(args.steps * args.batch / evaluation, 3)}))


if __name__ == "__main__":
    main()
