namespace NativeVlm.Tests;

/// <summary>
/// Straightforward double-precision reference implementations of every op, written from the
/// definitions in nvlm.h and from Hugging Face transformers / PyTorch — never from the native
/// kernels. Loops are naive on purpose: each reads as the formula it implements. Arrays are
/// flat and row-major with the shapes named in each signature.
/// </summary>
public static class Reference
{
    // ---- dense algebra -------------------------------------------------------------------------

    /// <summary>
    /// c[b] = op(a[b]) · op(b[b]) with op(a) [m, k] (stored [k, m] when transA) and op(b) [k, n]
    /// (stored [n, k] when transB); c [batch, m, n].
    /// </summary>
    public static double[] Matmul(double[] a, double[] b, int batch, int m, int n, int k, bool transA, bool transB)
    {
        var c = new double[batch * m * n];
        for (int bb = 0; bb < batch; bb++)
        {
            int aBase = bb * m * k, bBase = bb * k * n;
            for (int i = 0; i < m; i++)
            {
                for (int j = 0; j < n; j++)
                {
                    double s = 0;
                    for (int l = 0; l < k; l++)
                    {
                        double aij = transA ? a[aBase + l * m + i] : a[aBase + i * k + l];
                        double blj = transB ? b[bBase + j * k + l] : b[bBase + l * n + j];
                        s += aij * blj;
                    }
                    c[(bb * m + i) * n + j] = s;
                }
            }
        }
        return c;
    }

    /// <summary>torch.nn.functional.linear: out [m, n] = x [m, k] · w [n, k]ᵀ + bias [n].</summary>
    public static double[] Linear(double[] x, double[] w, double[]? bias, int m, int k, int n)
    {
        var y = new double[m * n];
        for (int i = 0; i < m; i++)
        {
            for (int j = 0; j < n; j++)
            {
                double s = bias?[j] ?? 0;
                for (int l = 0; l < k; l++)
                {
                    s += x[i * k + l] * w[j * k + l];
                }
                y[i * n + j] = s;
            }
        }
        return y;
    }

    /// <summary>torch.nn.functional.embedding: out [n, d] = table [vocab, d] rows at ids.</summary>
    public static double[] Embedding(double[] table, int[] ids, int vocab, int d)
    {
        var y = new double[ids.Length * d];
        for (int t = 0; t < ids.Length; t++)
        {
            if (ids[t] < 0 || ids[t] >= vocab)
            {
                throw new ArgumentOutOfRangeException(nameof(ids), $"id {ids[t]} at {t} outside [0, {vocab})");
            }
            Array.Copy(table, ids[t] * d, y, t * d, d);
        }
        return y;
    }

    /// <summary>
    /// torch's <c>x.index_copy(0, index, src)</c>, how Idefics3's inputs_merger puts image features
    /// at the image-token rows: out = x.clone(); out[index[i]] = src[i]. x [rows, d], src
    /// [index.Length, d]; indices must be in range and distinct (nvlm.h makes a repeat an error, where
    /// torch leaves the winner unspecified).
    /// </summary>
    public static double[] IndexCopy(double[] x, double[] src, int[] index, int rows, int d)
    {
        double[] y = (double[])x.Clone();
        var written = new HashSet<int>();
        for (int i = 0; i < index.Length; i++)
        {
            if (index[i] < 0 || index[i] >= rows || !written.Add(index[i]))
            {
                throw new ArgumentOutOfRangeException(nameof(index), $"index {index[i]} at {i} is outside [0, {rows}) or repeated");
            }
            Array.Copy(src, i * d, y, index[i] * d, d);
        }
        return y;
    }

    // ---- normalisation -------------------------------------------------------------------------

    /// <summary>
    /// LlamaRMSNorm.forward: variance = x.pow(2).mean(-1); x = x · rsqrt(variance + eps); w · x.
    /// x [n, d], w [d].
    /// </summary>
    public static double[] RmsNorm(double[] x, double[] w, int n, int d, double eps)
    {
        var y = new double[n * d];
        for (int r = 0; r < n; r++)
        {
            double variance = 0;
            for (int i = 0; i < d; i++)
            {
                variance += x[r * d + i] * x[r * d + i];
            }
            variance /= d;
            double rsqrt = 1 / Math.Sqrt(variance + eps);
            for (int i = 0; i < d; i++)
            {
                y[r * d + i] = w[i] * (x[r * d + i] * rsqrt);
            }
        }
        return y;
    }

    /// <summary>torch.nn.LayerNorm over the last dim: (x − E[x]) / √(Var[x] + eps) · w + b, Var biased.</summary>
    public static double[] LayerNorm(double[] x, double[] w, double[] b, int n, int d, double eps)
    {
        var y = new double[n * d];
        for (int r = 0; r < n; r++)
        {
            double mean = 0;
            for (int i = 0; i < d; i++)
            {
                mean += x[r * d + i];
            }
            mean /= d;
            double variance = 0;
            for (int i = 0; i < d; i++)
            {
                double c = x[r * d + i] - mean;
                variance += c * c;
            }
            variance /= d; // biased, as torch's layer_norm
            double denominator = Math.Sqrt(variance + eps);
            for (int i = 0; i < d; i++)
            {
                y[r * d + i] = (x[r * d + i] - mean) / denominator * w[i] + b[i];
            }
        }
        return y;
    }

    // ---- rotary position embedding --------------------------------------------------------------

    /// <summary>
    /// transformers' LlamaRotaryEmbedding + apply_rotary_pos_emb, literally:
    /// freqs = pos ⊗ inv_freq; emb = cat(freqs, freqs); cos, sin = emb.cos(), emb.sin();
    /// x_embed = x · cos + rotate_half(x) · sin with rotate_half(x) = cat(−x[h:], x[:h]).
    /// x [tokens, heads, headDim], pos [tokens], invFreq [headDim / 2].
    /// </summary>
    public static double[] Rope(double[] x, int[] pos, double[] invFreq, int tokens, int heads, int headDim)
    {
        int half = headDim / 2;
        var y = new double[x.Length];
        var emb = new double[headDim];
        var rotated = new double[headDim];
        for (int t = 0; t < tokens; t++)
        {
            for (int i = 0; i < half; i++)
            {
                double freq = pos[t] * invFreq[i];
                emb[i] = freq;
                emb[i + half] = freq;
            }
            for (int h = 0; h < heads; h++)
            {
                int at = (t * heads + h) * headDim;
                for (int i = 0; i < half; i++)
                {
                    rotated[i] = -x[at + half + i];
                    rotated[half + i] = x[at + i];
                }
                for (int i = 0; i < headDim; i++)
                {
                    y[at + i] = x[at + i] * Math.Cos(emb[i]) + rotated[i] * Math.Sin(emb[i]);
                }
            }
        }
        return y;
    }

    // ---- attention -----------------------------------------------------------------------------

    /// <summary>
    /// torch's scaled_dot_product_attention after transformers' repeat_kv (query head h reads kv
    /// head h / (heads / kvHeads)), with a boolean mask that is the key-padding mask AND, when
    /// causal, the bottom-right aligned causal mask (query i sees key j iff j ≤ i + tk − tq).
    /// A query row that sees no key is defined by nvlm.h as out = 0, lse = −∞ (torch would give NaN).
    /// q [batch, tq, heads, hd]; k, v [batch, tk, kvHeads, hd]; keyMask [batch, tk] or null.
    /// Returns out [batch, tq, heads, hd] and lse [batch, heads, tq].
    /// </summary>
    public static (double[] Out, double[] Lse) Attention(double[] q, double[] k, double[] v, byte[]? keyMask,
        int batch, int tq, int tk, int heads, int kvHeads, int headDim, bool causal, double scale)
    {
        var output = new double[batch * tq * heads * headDim];
        var lse = new double[batch * heads * tq];
        int groups = heads / kvHeads;
        var scores = new double[tk];
        var visible = new bool[tk];
        for (int b = 0; b < batch; b++)
        {
            for (int h = 0; h < heads; h++)
            {
                int kvh = h / groups;
                for (int i = 0; i < tq; i++)
                {
                    int qAt = ((b * tq + i) * heads + h) * headDim;
                    double max = double.NegativeInfinity;
                    for (int j = 0; j < tk; j++)
                    {
                        visible[j] = (keyMask == null || keyMask[b * tk + j] != 0) && (!causal || j <= i + tk - tq);
                        if (!visible[j])
                        {
                            continue;
                        }
                        int kAt = ((b * tk + j) * kvHeads + kvh) * headDim;
                        double s = 0;
                        for (int e = 0; e < headDim; e++)
                        {
                            s += q[qAt + e] * k[kAt + e];
                        }
                        scores[j] = s * scale;
                        max = Math.Max(max, scores[j]);
                    }
                    if (double.IsNegativeInfinity(max))
                    {
                        lse[(b * heads + h) * tq + i] = double.NegativeInfinity; // output row stays 0
                        continue;
                    }
                    double denominator = 0;
                    for (int j = 0; j < tk; j++)
                    {
                        if (visible[j])
                        {
                            denominator += Math.Exp(scores[j] - max);
                        }
                    }
                    lse[(b * heads + h) * tq + i] = max + Math.Log(denominator);
                    for (int j = 0; j < tk; j++)
                    {
                        if (!visible[j])
                        {
                            continue;
                        }
                        double p = Math.Exp(scores[j] - max) / denominator;
                        int vAt = ((b * tk + j) * kvHeads + kvh) * headDim;
                        for (int e = 0; e < headDim; e++)
                        {
                            output[qAt + e] += p * v[vAt + e];
                        }
                    }
                }
            }
        }
        return (output, lse);
    }

    // ---- elementwise ---------------------------------------------------------------------------

    /// <summary>gelu_pytorch_tanh: 0.5 · x · (1 + tanh(√(2/π) · (x + 0.044715 · x³))).</summary>
    public static double[] Gelu(double[] x) =>
        x.Select(v => 0.5 * v * (1 + Math.Tanh(Math.Sqrt(2 / Math.PI) * (v + 0.044715 * v * v * v)))).ToArray();

    /// <summary>LlamaMLP's act_fn(gate_proj(x)) * up_proj(x) with act_fn = SiLU: g · σ(g) · u.</summary>
    public static double[] SwiGlu(double[] gate, double[] up) =>
        gate.Select((g, i) => g / (1 + Math.Exp(-g)) * up[i]).ToArray();

    public static double[] Residual(double[] a, double[] b) => a.Select((v, i) => v + b[i]).ToArray();

    public static double[] Scale(double[] x, double alpha) => x.Select(v => alpha * v).ToArray();

    public static double[] Sum(double[] x) => [x.Sum()];

    // ---- SigLIP patch embedding ----------------------------------------------------------------

    /// <summary>
    /// torch.nn.functional.conv2d without padding, the same stride on both axes:
    /// out[b, o, oy, ox] = bias[o] + Σ_{c, ky, kx} weight[o, c, ky, kx] · x[b, c, oy·stride + ky, ox·stride + kx].
    /// x [n, cIn, h, w], weight [cOut, cIn, kernel, kernel], bias [cOut] or null
    /// → [n, cOut, (h − kernel) / stride + 1, (w − kernel) / stride + 1].
    /// </summary>
    public static double[] Conv2d(double[] x, double[] weight, double[]? bias, int n, int cIn, int h, int w, int cOut,
        int kernel, int stride)
    {
        int outH = (h - kernel) / stride + 1, outW = (w - kernel) / stride + 1;
        var y = new double[n * cOut * outH * outW];
        for (int b = 0; b < n; b++)
        {
            for (int o = 0; o < cOut; o++)
            {
                for (int oy = 0; oy < outH; oy++)
                {
                    for (int ox = 0; ox < outW; ox++)
                    {
                        double s = bias?[o] ?? 0;
                        for (int c = 0; c < cIn; c++)
                        {
                            for (int ky = 0; ky < kernel; ky++)
                            {
                                for (int kx = 0; kx < kernel; kx++)
                                {
                                    s += weight[((o * cIn + c) * kernel + ky) * kernel + kx]
                                         * x[((b * cIn + c) * h + oy * stride + ky) * w + ox * stride + kx];
                                }
                            }
                        }
                        y[((b * cOut + o) * outH + oy) * outW + ox] = s;
                    }
                }
            }
        }
        return y;
    }

    /// <summary>
    /// SiglipVisionEmbeddings' patch embedding, before the position embeddings:
    /// <code>
    /// self.patch_embedding = nn.Conv2d(num_channels, embed_dim, kernel_size=patch_size, stride=patch_size, padding="valid")
    /// patch_embeds = self.patch_embedding(pixel_values)
    /// embeddings = patch_embeds.flatten(2).transpose(1, 2)
    /// </code>
    /// pixels [n, c, h, w], weight [hidden, c, patch, patch], bias [hidden] or null → [n, patches, hidden].
    /// </summary>
    public static double[] SiglipPatchEmbedding(double[] pixels, double[] weight, double[]? bias, int n, int c, int h,
        int w, int hidden, int patch)
    {
        double[] patchEmbeds = Conv2d(pixels, weight, bias, n, c, h, w, hidden, patch, patch);
        int gridH = h / patch, gridW = w / patch;
        return new Strided(patchEmbeds, n, hidden, gridH, gridW)
            .View(n, hidden, gridH * gridW) // flatten(2)
            .Permute(0, 2, 1)               // transpose(1, 2)
            .Contiguous();
    }

    /// <summary>
    /// The patches alone, as the conv sees them: <see cref="SiglipPatchEmbedding"/> with the identity
    /// weight bank (output channel k is the one-hot kernel of element k in (channel, ky, kx) order),
    /// so out[b, patch, k] is the k-th value under the kernel at that patch. pixels [n, c, h, w]
    /// → [n, patches, c · patch²].
    /// </summary>
    public static double[] Patchify(double[] pixels, int n, int c, int h, int w, int patch)
    {
        int k = c * patch * patch;
        var identity = new double[k * k];
        for (int i = 0; i < k; i++)
        {
            identity[i * k + i] = 1;
        }
        return SiglipPatchEmbedding(pixels, identity, null, n, c, h, w, k, patch);
    }

    // ---- Idefics3 connector --------------------------------------------------------------------

    /// <summary>
    /// Idefics3Connector.pixel_shuffle, transcribed line by line with torch's view / permute /
    /// reshape semantics (a view reinterprets contiguous data; a permute moves it):
    /// <code>
    /// bsz, seq, embed_dim = x.size()
    /// height = width = int(seq**0.5)
    /// x = x.view(bsz, height, width, embed_dim)
    /// x = x.view(bsz, height, int(width / scale_factor), embed_dim * scale_factor)
    /// x = x.permute(0, 2, 1, 3)
    /// x = x.reshape(bsz, int(width / scale_factor), int(height / scale_factor), embed_dim * (scale_factor**2))
    /// x = x.permute(0, 2, 1, 3)
    /// x = x.reshape(bsz, int(seq / (scale_factor**2)), embed_dim * (scale_factor**2))
    /// </code>
    /// </summary>
    public static double[] PixelShuffle(double[] x, int bsz, int seq, int embedDim, int scaleFactor)
    {
        int height = (int)Math.Sqrt(seq), width = height;
        var t = new Strided(x, bsz, seq, embedDim);
        t = t.View(bsz, height, width, embedDim);
        t = t.View(bsz, height, width / scaleFactor, embedDim * scaleFactor);
        t = t.Permute(0, 2, 1, 3);
        t = t.Reshape(bsz, width / scaleFactor, height / scaleFactor, embedDim * scaleFactor * scaleFactor);
        t = t.Permute(0, 2, 1, 3);
        t = t.Reshape(bsz, seq / (scaleFactor * scaleFactor), embedDim * scaleFactor * scaleFactor);
        return t.Contiguous();
    }

    /// <summary>
    /// nvlm.h's closed form of the same shuffle: patch (r = R·s + i, c = C·s + j) lands in output
    /// token R·(side/s) + C at channels [(i·s + j)·d, (i·s + j + 1)·d). Used only to cross-check
    /// <see cref="PixelShuffle"/> (the header and transformers must agree).
    /// </summary>
    public static double[] PixelShuffleClosedForm(double[] x, int n, int seq, int d, int s)
    {
        int side = (int)Math.Sqrt(seq), outSide = side / s, outSeq = seq / (s * s), outD = d * s * s;
        var y = new double[x.Length];
        for (int b = 0; b < n; b++)
        {
            for (int r = 0; r < side; r++)
            {
                for (int c = 0; c < side; c++)
                {
                    int token = (r / s) * outSide + c / s, channel = ((r % s) * s + c % s) * d;
                    for (int e = 0; e < d; e++)
                    {
                        y[(b * outSeq + token) * outD + channel + e] = x[(b * seq + r * side + c) * d + e];
                    }
                }
            }
        }
        return y;
    }

    /// <summary>A minimal torch-like strided view, enough for view / permute / reshape.</summary>
    private sealed class Strided
    {
        private readonly double[] _data;
        private readonly int[] _shape;
        private readonly int[] _strides;

        public Strided(double[] data, params int[] shape) : this(data, shape, ContiguousStrides(shape))
        {
        }

        private Strided(double[] data, int[] shape, int[] strides)
        {
            _data = data;
            _shape = shape;
            _strides = strides;
        }

        private static int[] ContiguousStrides(int[] shape)
        {
            var strides = new int[shape.Length];
            int stride = 1;
            for (int i = shape.Length - 1; i >= 0; i--)
            {
                strides[i] = stride;
                stride *= shape[i];
            }
            return strides;
        }

        private bool IsContiguous => _strides.SequenceEqual(ContiguousStrides(_shape));

        /// <summary>torch.Tensor.view: only on contiguous data, same elements in the same order.</summary>
        public Strided View(params int[] shape)
        {
            if (!IsContiguous || shape.Aggregate(1, (p, v) => p * v) != _data.Length)
            {
                throw new InvalidOperationException("view needs a contiguous tensor with the same element count");
            }
            return new Strided(_data, shape);
        }

        /// <summary>torch.Tensor.permute: the same data, dimensions (and strides) reordered.</summary>
        public Strided Permute(params int[] dims) =>
            new(_data, dims.Select(i => _shape[i]).ToArray(), dims.Select(i => _strides[i]).ToArray());

        /// <summary>torch.Tensor.reshape: a view when contiguous, else a contiguous copy, then a view.</summary>
        public Strided Reshape(params int[] shape) => new Strided(Contiguous(), _shape).View(shape);

        /// <summary>The elements in row-major order of the current shape.</summary>
        public double[] Contiguous()
        {
            var result = new double[_data.Length];
            var index = new int[_shape.Length];
            for (int flat = 0; flat < result.Length; flat++)
            {
                int offset = 0;
                for (int i = 0; i < index.Length; i++)
                {
                    offset += index[i] * _strides[i];
                }
                result[flat] = _data[offset];
                for (int i = index.Length - 1; i >= 0 && ++index[i] == _shape[i]; i--)
                {
                    index[i] = 0;
                }
            }
            return result;
        }
    }

    // ---- language-model head -------------------------------------------------------------------

    /// <summary>
    /// log_softmax(h · wᵀ, -1).gather(-1, targets), with 0 where the target is -100, and the
    /// per-token logsumexp. h [n, d], w [vocab, d], targets [n].
    /// </summary>
    public static (double[] Logp, double[] Lse) LmLogProb(double[] h, double[] w, int[] targets, int n, int d, int vocab)
    {
        double[] logits = Linear(h, w, null, n, d, vocab);
        var logp = new double[n];
        var lse = new double[n];
        for (int t = 0; t < n; t++)
        {
            double max = double.NegativeInfinity;
            for (int c = 0; c < vocab; c++)
            {
                max = Math.Max(max, logits[t * vocab + c]);
            }
            double s = 0;
            for (int c = 0; c < vocab; c++)
            {
                s += Math.Exp(logits[t * vocab + c] - max);
            }
            lse[t] = max + Math.Log(s);
            logp[t] = targets[t] == -100 ? 0 : logits[t * vocab + targets[t]] - lse[t];
        }
        return (logp, lse);
    }

    /// <summary>
    /// transformers' causal-LM loss: F.cross_entropy(logits, targets, ignore_index=-100,
    /// reduction="mean") = −Σ log_softmax[target] / (number of kept targets).
    /// </summary>
    public static double CrossEntropy(double[] h, double[] w, int[] targets, int n, int d, int vocab)
    {
        double[] logits = Linear(h, w, null, n, d, vocab);
        double total = 0;
        int kept = 0;
        for (int t = 0; t < n; t++)
        {
            if (targets[t] == -100)
            {
                continue;
            }
            double max = Enumerable.Range(0, vocab).Max(c => logits[t * vocab + c]);
            double lse = max + Math.Log(Enumerable.Range(0, vocab).Sum(c => Math.Exp(logits[t * vocab + c] - max)));
            total += lse - logits[t * vocab + targets[t]];
            kept++;
        }
        return total / kept;
    }

    // ---- optimiser -----------------------------------------------------------------------------

    /// <summary>
    /// One step of torch.optim.AdamW (_single_tensor_adamw, no amsgrad, no maximize), in place:
    /// <code>
    /// param.mul_(1 - lr * weight_decay)
    /// exp_avg.lerp_(grad, 1 - beta1)
    /// exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
    /// bias_correction1 = 1 - beta1 ** step
    /// bias_correction2 = 1 - beta2 ** step
    /// step_size = lr / bias_correction1
    /// denom = (exp_avg_sq.sqrt() / bias_correction2 ** 0.5).add_(eps)
    /// param.addcdiv_(exp_avg, denom, value=-step_size)
    /// </code>
    /// </summary>
    public static void AdamWStep(double[] param, double[] grad, double[] m, double[] v, double lr, double beta1,
        double beta2, double eps, double weightDecay, long step)
    {
        double biasCorrection1 = 1 - Math.Pow(beta1, step);
        double biasCorrection2 = 1 - Math.Pow(beta2, step);
        double stepSize = lr / biasCorrection1;
        for (int i = 0; i < param.Length; i++)
        {
            param[i] *= 1 - lr * weightDecay;
            m[i] += (grad[i] - m[i]) * (1 - beta1);
            v[i] = v[i] * beta2 + (1 - beta2) * grad[i] * grad[i];
            double denom = Math.Sqrt(v[i]) / Math.Sqrt(biasCorrection2) + eps;
            param[i] -= stepSize * m[i] / denom;
        }
    }

    // ---- casts ---------------------------------------------------------------------------------

    /// <summary>
    /// f32 → bf16 by IEEE round-to-nearest-even, decided by comparing the two neighbouring bf16
    /// values in double (exact: both are floats) rather than by the usual +0x7FFF bit trick.
    /// Beyond the largest bf16 the upper neighbour is 2^128, i.e. rounding goes to ±Inf as IEEE's
    /// overflow rule says. NaN becomes a quiet NaN of the same sign.
    /// </summary>
    public static ushort F32ToBf16(float value)
    {
        uint bits = BitConverter.SingleToUInt32Bits(value);
        ushort sign = (ushort)((bits >> 16) & 0x8000);
        if (float.IsNaN(value))
        {
            return (ushort)(sign | 0x7FC0);
        }
        if (float.IsInfinity(value))
        {
            return (ushort)(sign | 0x7F80);
        }
        double magnitude = Math.Abs((double)value);
        ushort below = (ushort)((bits & 0x7FFFFFFF) >> 16); // truncation: the neighbour towards zero
        double lower = Bf16ToF32((ushort)below);
        double upper = below == 0x7F7F ? Math.Pow(2, 128) : Bf16ToF32((ushort)(below + 1));
        double toLower = magnitude - lower, toUpper = upper - magnitude;
        ushort chosen = toLower < toUpper ? below
            : toUpper < toLower ? (ushort)(below + 1)
            : (below & 1) == 0 ? below : (ushort)(below + 1); // a tie goes to the even mantissa
        return (ushort)(sign | chosen);
    }

    /// <summary>bf16 → f32 is exact: the bf16 bits are the top half of the f32.</summary>
    public static float Bf16ToF32(ushort bits) => BitConverter.UInt32BitsToSingle((uint)bits << 16);

    public static bool IsBf16NaN(ushort bits) => (bits & 0x7F80) == 0x7F80 && (bits & 0x007F) != 0;

    // ---- finite differences --------------------------------------------------------------------

    /// <summary>
    /// Central finite differences of the scalar L(x) = Σ gradOutput · f(x) with respect to every
    /// element of inputs[which]: (L(x + h·e) − L(x − h·e)) / 2h, all in double. Its error is the
    /// truncation term h²/6 · ∂³L (zero when f is linear in that element) plus cancellation of
    /// about 1e-16 · |L| / h, so h is chosen per op by the caller to balance the two.
    /// </summary>
    public static double[] FiniteDifferenceGradient(Func<double[][], double[]> f, double[][] inputs,
        double[] gradOutput, int which, double h)
    {
        double Loss(double[][] xs)
        {
            double[] y = f(xs);
            if (y.Length != gradOutput.Length)
            {
                throw new InvalidOperationException($"reference gave {y.Length} values, gradient has {gradOutput.Length}");
            }
            double s = 0;
            for (int i = 0; i < y.Length; i++)
            {
                s += gradOutput[i] * y[i];
            }
            return s;
        }

        double[][] work = inputs.Select(a => (double[])a.Clone()).ToArray();
        double[] x = work[which];
        var grad = new double[x.Length];
        for (int j = 0; j < x.Length; j++)
        {
            double saved = x[j];
            double up = saved + h, down = saved - h; // the step actually taken, after rounding
            x[j] = up;
            double plus = Loss(work);
            x[j] = down;
            double minus = Loss(work);
            x[j] = saved;
            grad[j] = (plus - minus) / (up - down);
        }
        return grad;
    }
}
