/**
 * Float64 reference GPT in plain TypeScript, with a minimal reverse-mode
 * autograd over flat arrays. It exists only to check the GPU model's loss
 * and gradients: written for clarity, not speed, and sharing no
 * code with core/.
 */

/** A node: value, gradient, and how to push the gradient to its parents. */
export class V {
  grad: Float64Array;
  back: () => void = () => {};
  constructor(public data: Float64Array, public shape: number[]) {
    this.grad = new Float64Array(data.length);
  }
}

/** Records nodes in creation order; `backward` runs them in reverse. */
export class Graph {
  nodes: V[] = [];
  node(data: Float64Array, shape: number[]): V {
    const v = new V(data, shape);
    this.nodes.push(v);
    return v;
  }
  backward(root: V): void {
    root.grad.fill(1);
    for (let i = this.nodes.length - 1; i >= 0; i--) this.nodes[i].back();
  }

  /** y = x·Wᵀ + b; x (N, I), W (O, I), b (O) or null. */
  linear(x: V, w: V, b: V | null): V {
    const I = w.shape[1], O = w.shape[0], N = x.data.length / I;
    const y = new Float64Array(N * O);
    for (let n = 0; n < N; n++) {
      for (let o = 0; o < O; o++) {
        let s = b ? b.data[o] : 0;
        for (let i = 0; i < I; i++) s += x.data[n * I + i] * w.data[o * I + i];
        y[n * O + o] = s;
      }
    }
    const out = this.node(y, [...x.shape.slice(0, -1), O]);
    out.back = () => {
      for (let n = 0; n < N; n++) {
        for (let o = 0; o < O; o++) {
          const g = out.grad[n * O + o];
          if (b) b.grad[o] += g;
          for (let i = 0; i < I; i++) {
            x.grad[n * I + i] += g * w.data[o * I + i];
            w.grad[o * I + i] += g * x.data[n * I + i];
          }
        }
      }
    };
    return out;
  }

  add(a: V, b: V): V {
    const out = this.node(a.data.map((x, i) => x + b.data[i % b.data.length]), a.shape);
    out.back = () => {
      out.grad.forEach((g, i) => {
        a.grad[i] += g;
        b.grad[i % b.data.length] += g;
      });
    };
    return out;
  }

  relu(a: V): V {
    const out = this.node(a.data.map((x) => (x > 0 ? x : 0)), a.shape);
    out.back = () => out.grad.forEach((g, i) => (a.grad[i] += a.data[i] > 0 ? g : 0));
    return out;
  }

  gelu(a: V): V {
    const c = Math.sqrt(2 / Math.PI);
    const out = this.node(
      a.data.map((x) => 0.5 * x * (1 + Math.tanh(c * (x + 0.044715 * x ** 3)))),
      a.shape,
    );
    out.back = () =>
      out.grad.forEach((g, i) => {
        const x = a.data[i];
        const u = c * (x + 0.044715 * x ** 3);
        const t = Math.tanh(u);
        const du = c * (1 + 3 * 0.044715 * x * x);
        a.grad[i] += g * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * du);
      });
    return out;
  }

  /** LayerNorm over the last dim, eps 1e-5. */
  layernorm(x: V, w: V, b: V): V {
    const C = w.data.length, N = x.data.length / C;
    const y = new Float64Array(x.data.length);
    const xhat = new Float64Array(x.data.length);
    const rstd = new Float64Array(N);
    for (let n = 0; n < N; n++) {
      let mean = 0;
      for (let c = 0; c < C; c++) mean += x.data[n * C + c];
      mean /= C;
      let vr = 0;
      for (let c = 0; c < C; c++) vr += (x.data[n * C + c] - mean) ** 2;
      rstd[n] = 1 / Math.sqrt(vr / C + 1e-5);
      for (let c = 0; c < C; c++) {
        xhat[n * C + c] = (x.data[n * C + c] - mean) * rstd[n];
        y[n * C + c] = xhat[n * C + c] * w.data[c] + b.data[c];
      }
    }
    const out = this.node(y, x.shape);
    out.back = () => {
      for (let n = 0; n < N; n++) {
        let dmean = 0, dxh = 0;
        for (let c = 0; c < C; c++) {
          const g = out.grad[n * C + c];
          w.grad[c] += g * xhat[n * C + c];
          b.grad[c] += g;
          const dh = g * w.data[c];
          dmean += dh;
          dxh += dh * xhat[n * C + c];
        }
        dmean /= C;
        dxh /= C;
        for (let c = 0; c < C; c++) {
          const dh = out.grad[n * C + c] * w.data[c];
          x.grad[n * C + c] += rstd[n] * (dh - dmean - xhat[n * C + c] * dxh);
        }
      }
    };
    return out;
  }

  /** Causal multi-head attention from qkv (B, T, 3C) to y (B, T, C). */
  attention(qkv: V, B: number, T: number, C: number, H: number): V {
    const hs = C / H, sc = 1 / Math.sqrt(hs);
    const at = (b: number, t: number, part: number, h: number, d: number) =>
      (b * T + t) * 3 * C + part * C + h * hs + d;
    const P = new Float64Array(B * H * T * T);
    const y = new Float64Array(B * T * C);
    for (let b = 0; b < B; b++) {
      for (let h = 0; h < H; h++) {
        for (let t = 0; t < T; t++) {
          const row = ((b * H + h) * T + t) * T;
          let mx = -Infinity;
          for (let u = 0; u <= t; u++) {
            let s = 0;
            for (let d = 0; d < hs; d++) {
              s += qkv.data[at(b, t, 0, h, d)] * qkv.data[at(b, u, 1, h, d)];
            }
            P[row + u] = s * sc;
            mx = Math.max(mx, P[row + u]);
          }
          let z = 0;
          for (let u = 0; u <= t; u++) z += P[row + u] = Math.exp(P[row + u] - mx);
          for (let u = 0; u <= t; u++) P[row + u] /= z;
          for (let d = 0; d < hs; d++) {
            let s = 0;
            for (let u = 0; u <= t; u++) s += P[row + u] * qkv.data[at(b, u, 2, h, d)];
            y[(b * T + t) * C + h * hs + d] = s;
          }
        }
      }
    }
    const out = this.node(y, [B, T, C]);
    out.back = () => {
      for (let b = 0; b < B; b++) {
        for (let h = 0; h < H; h++) {
          for (let t = 0; t < T; t++) {
            const row = ((b * H + h) * T + t) * T;
            const dP = new Float64Array(t + 1);
            for (let u = 0; u <= t; u++) {
              for (let d = 0; d < hs; d++) {
                const g = out.grad[(b * T + t) * C + h * hs + d];
                dP[u] += g * qkv.data[at(b, u, 2, h, d)];
                qkv.grad[at(b, u, 2, h, d)] += P[row + u] * g;
              }
            }
            let dot = 0;
            for (let u = 0; u <= t; u++) dot += dP[u] * P[row + u];
            for (let u = 0; u <= t; u++) {
              const dS = P[row + u] * (dP[u] - dot) * sc;
              for (let d = 0; d < hs; d++) {
                qkv.grad[at(b, t, 0, h, d)] += dS * qkv.data[at(b, u, 1, h, d)];
                qkv.grad[at(b, u, 1, h, d)] += dS * qkv.data[at(b, t, 0, h, d)];
              }
            }
          }
        }
      }
    };
    return out;
  }

  /** Rows of w (V, C) picked by idx. */
  embedding(w: V, idx: ArrayLike<number>): V {
    const C = w.shape[1];
    const y = new Float64Array(idx.length * C);
    for (let i = 0; i < idx.length; i++) {
      for (let c = 0; c < C; c++) y[i * C + c] = w.data[idx[i] * C + c];
    }
    const out = this.node(y, [idx.length, C]);
    out.back = () => {
      for (let i = 0; i < idx.length; i++) {
        for (let c = 0; c < C; c++) w.grad[idx[i] * C + c] += out.grad[i * C + c];
      }
    };
    return out;
  }

  /** Mean over rows of logsumexp(row) - row[target]. */
  crossEntropy(logits: V, targets: ArrayLike<number>): V {
    const N = targets.length, Vn = logits.data.length / N;
    const probs = new Float64Array(logits.data.length);
    let loss = 0;
    for (let n = 0; n < N; n++) {
      let mx = -Infinity;
      for (let v = 0; v < Vn; v++) mx = Math.max(mx, logits.data[n * Vn + v]);
      let z = 0;
      for (let v = 0; v < Vn; v++) z += probs[n * Vn + v] = Math.exp(logits.data[n * Vn + v] - mx);
      for (let v = 0; v < Vn; v++) probs[n * Vn + v] /= z;
      loss += Math.log(z) + mx - logits.data[n * Vn + targets[n]];
    }
    const out = this.node(Float64Array.of(loss / N), [1]);
    out.back = () => {
      for (let n = 0; n < N; n++) {
        for (let v = 0; v < Vn; v++) {
          const onehot = v === targets[n] ? 1 : 0;
          logits.grad[n * Vn + v] += (out.grad[0] * (probs[n * Vn + v] - onehot)) / N;
        }
      }
    };
    return out;
  }
}

/** Model config of the reference (same fields as the GPU model's). */
export interface RefConfig {
  vocab: number;
  ctx: number;
  d_model: number;
  n_layer: number;
  n_head: number;
  d_ff: number;
  activation: "relu" | "gelu";
}

/**
 * Loss of the GPT on tokens x (B, T) with targets y, and the
 * gradients of every named parameter (nanoGPT names).
 */
export function refLossAndGrads(
  cfg: RefConfig,
  params: Map<string, { data: Float64Array; shape: number[] }>,
  x: ArrayLike<number>,
  y: ArrayLike<number>,
  B: number,
  T: number,
): { loss: number; grads: Map<string, Float64Array> } {
  const g = new Graph();
  const p = new Map<string, V>();
  for (const [name, t] of params) p.set(name, new V(Float64Array.from(t.data), t.shape));
  const P = (name: string) => {
    const v = p.get(name);
    if (!v) throw new Error(`reference model: missing parameter ${name}`);
    return v;
  };
  const C = cfg.d_model;
  const pos = Array.from({ length: B * T }, (_, i) => i % T);
  let h = g.add(
    g.embedding(P("transformer.wte.weight"), x),
    g.embedding(P("transformer.wpe.weight"), pos),
  );
  for (let l = 0; l < cfg.n_layer; l++) {
    const pre = `transformer.h.${l}.`;
    const a = g.layernorm(h, P(pre + "ln_1.weight"), P(pre + "ln_1.bias"));
    const qkv = g.linear(a, P(pre + "attn.c_attn.weight"), P(pre + "attn.c_attn.bias"));
    const att = g.attention(qkv, B, T, C, cfg.n_head);
    h = g.add(h, g.linear(att, P(pre + "attn.c_proj.weight"), P(pre + "attn.c_proj.bias")));
    const m = g.layernorm(h, P(pre + "ln_2.weight"), P(pre + "ln_2.bias"));
    const fc = g.linear(m, P(pre + "mlp.c_fc.weight"), P(pre + "mlp.c_fc.bias"));
    const act = cfg.activation === "gelu" ? g.gelu(fc) : g.relu(fc);
    h = g.add(h, g.linear(act, P(pre + "mlp.c_proj.weight"), P(pre + "mlp.c_proj.bias")));
  }
  const f = g.layernorm(h, P("transformer.ln_f.weight"), P("transformer.ln_f.bias"));
  const logits = g.linear(f, P("transformer.wte.weight"), null);
  const loss = g.crossEntropy(logits, y);
  g.backward(loss);
  const grads = new Map<string, Float64Array>();
  for (const [name, v] of p) grads.set(name, v.grad);
  return { loss: loss.data[0], grads };
}
