using NativeVlm.Autograd;
using NativeVlm.Nn;
using NativeVlm.Tensors;

namespace NativeVlm.Models;

// The SigLIP-style vision tower of Idefics3 / SmolVLM, as transformers v4.46.3 computes it
// (Idefics3VisionTransformer, eager attention), read top to bottom: LayerNorm with bias →
// Embeddings → Attention → Mlp → EncoderLayer → Model. Its projections are biased Nn.Linear modules.
// Loaders take the checkpoint's names below model.vision_model; NamedParameters gives them back,
// relative to the same prefix. Linears lists the Linear modules in transformers' registration order
// (which is the order of PEFT's adapter files).

/// <summary>nn.LayerNorm over the last dimension: weight and bias [d].</summary>
public sealed class SiglipLayerNorm(Tensor weight, Tensor bias, float eps)
{
    public Tensor Weight { get; } = weight;

    public Tensor Bias { get; } = bias;

    public float Eps { get; } = eps;

    public static SiglipLayerNorm Load(Weights w, int size, double eps) =>
        new(w.Get("weight", size), w.Get("bias", size), (float)eps);

    public Tensor Forward(Tensor x) => Ops.LayerNorm(x, Weight, Bias, Eps);

    public IEnumerable<(string Name, Tensor Tensor)> NamedParameters => [("weight", Weight), ("bias", Bias)];
}

/// <summary>
/// Idefics3VisionEmbeddings: the patch conv (kernel = stride = patch) as Patchify + Linear, plus a
/// learned position embedding whose ids come from each frame's patch mask (NaViT-style: a frame that
/// covers only part of the grid has its patches spread over the whole position table).
/// </summary>
public sealed class SiglipVisionEmbeddings
{
    private readonly VisionConfig _config;

    private SiglipVisionEmbeddings(VisionConfig config, Tensor patchWeight, Tensor patchBias, Tensor positionEmbedding)
    {
        _config = config;
        PatchEmbeddingWeight = patchWeight;
        PatchEmbeddingBias = patchBias;
        PositionEmbedding = positionEmbedding;
    }

    /// <summary>The conv's weight [hidden, channels, patch, patch], kept in the checkpoint's shape.</summary>
    public Tensor PatchEmbeddingWeight { get; }

    /// <summary>[hidden]</summary>
    public Tensor PatchEmbeddingBias { get; }

    /// <summary>[num_patches, hidden]: one row per cell of the patches_per_side² grid.</summary>
    public Tensor PositionEmbedding { get; }

    public static SiglipVisionEmbeddings Load(Weights w, VisionConfig c)
    {
        Weights patch = w.Sub("patch_embedding");
        return new SiglipVisionEmbeddings(c,
            patch.Get("weight", c.HiddenSize, c.NumChannels, c.PatchSize, c.PatchSize),
            patch.Get("bias", c.HiddenSize),
            w.Sub("position_embedding").Get("weight", c.NumPatches, c.HiddenSize));
    }

    /// <param name="pixels">[n, channels, h, w], h and w multiples of patch.</param>
    /// <param name="positionIds">[n, (h / patch)·(w / patch)] int32, from <see cref="PositionIds"/>.</param>
    /// <returns>[n, patches, hidden]</returns>
    public Tensor Forward(Tensor pixels, Tensor positionIds)
    {
        int p = _config.PatchSize;
        Tensor convWeight = PatchEmbeddingWeight.Reshape(_config.HiddenSize, (long)_config.NumChannels * p * p);
        Tensor patchEmbeds = Ops.Linear(Ops.Patchify(pixels, p), convWeight, PatchEmbeddingBias); // (n, patches, hidden)
        return Ops.Residual(patchEmbeds, Ops.Embedding(PositionEmbedding, positionIds));
    }

    /// <summary>
    /// The position id of every patch, [frames, rows·cols], as Idefics3VisionEmbeddings.forward
    /// assigns them: a frame whose mask has nb_h valid patches in its first column and nb_w in its
    /// first row gets fractional coordinates arange(0, 1 − 1e-6, 1 / nb) per axis, bucketized against
    /// the cell edges arange(1 / patches_per_side, 1, 1 / patches_per_side) (right=True);
    /// id = bucket_h · patches_per_side + bucket_w, handed to the valid patches in row-major order,
    /// and 0 to the rest. The arithmetic is torch's float32 one, so that ids agree exactly where a
    /// coordinate lands on a cell edge up to rounding.
    /// </summary>
    /// <param name="patchMask">[frames, rows, cols], 1 where the patch has a valid pixel.</param>
    public static int[] PositionIds(ReadOnlySpan<byte> patchMask, int frames, int rows, int cols, int patchesPerSide)
    {
        int patches = rows * cols;
        if (patchMask.Length != frames * patches)
        {
            throw new ArgumentException($"the patch mask has {patchMask.Length} entries, {frames} frames of {rows}×{cols} patches need {frames * patches}");
        }
        // torch.arange with Python-float arguments: the step is the double 1 / patches_per_side.
        double cell = 1.0 / patchesPerSide;
        float[] boundaries = ArangeFloat32(cell, 1.0, cell);

        var ids = new int[frames * patches];
        for (int f = 0; f < frames; f++)
        {
            ReadOnlySpan<byte> mask = patchMask.Slice(f * patches, patches);
            int nbH = 0, nbW = 0, valid = 0;
            for (int r = 0; r < rows; r++)
            {
                nbH += mask[r * cols] != 0 ? 1 : 0;
            }
            for (int c = 0; c < cols; c++)
            {
                nbW += mask[c] != 0 ? 1 : 0;
            }
            foreach (byte m in mask)
            {
                valid += m != 0 ? 1 : 0;
            }
            int[] bucketH = Bucketize(FractionalCoords(nbH), boundaries);
            int[] bucketW = Bucketize(FractionalCoords(nbW), boundaries);
            if (bucketH.Length * bucketW.Length != valid || valid == 0)
            {
                // torch fails the assignment (a shape mismatch) on such masks, or (no valid patch)
                // attends uniformly over masked keys, which the attention op does not reproduce.
                throw new ArgumentException(
                    $"frame {f}: the patch mask must be one non-empty rectangle at the top left, as an image padded at its bottom " +
                    $"and right gives; it has {valid} valid patches, {nbH} in its first column and {nbW} in its first row");
            }
            int k = 0;
            for (int i = 0; i < patches; i++)
            {
                if (mask[i] != 0)
                {
                    ids[f * patches + i] = bucketH[k / bucketW.Length] * patchesPerSide + bucketW[k % bucketW.Length];
                    k++;
                }
            }
        }
        return ids;
    }

    /// <summary>
    /// torch.arange(0, 1 − 1e-6, 1 / nb) with nb an int64 tensor: 1 / nb is a float32 division,
    /// whose result becomes the (double) step.
    /// </summary>
    private static float[] FractionalCoords(int nb) => ArangeFloat32(0.0, 1 - 1e-6, 1f / nb);

    /// <summary>
    /// torch.arange(start, end, step) into float32 on the CPU: ceil((end − start) / step) elements
    /// (computed in double), element i = (float)(start + step · i) with the sum in double (the CPU
    /// kernel's accumulate type). This is its scalar loop; the vectorized loop, which handles the
    /// first 16 or 32 elements on AVX2 / AVX-512 machines, first rounds the start of each vector to
    /// float and can differ in the last bit, but for 27 and 32 patches per side (SmolVLM's 384/14
    /// and 512/16) the buckets come out the same for every nb.
    /// </summary>
    private static float[] ArangeFloat32(double start, double end, double step)
    {
        var values = new float[(long)Math.Ceiling((end - start) / step)];
        for (int i = 0; i < values.Length; i++)
        {
            values[i] = (float)(start + step * i);
        }
        return values;
    }

    /// <summary>torch.bucketize(values, boundaries, right=True): the number of boundaries ≤ each value.</summary>
    private static int[] Bucketize(float[] values, float[] boundaries) =>
        values.Select(v => boundaries.Count(b => b <= v)).ToArray();

    public IEnumerable<(string Name, Tensor Tensor)> NamedParameters =>
    [
        ("patch_embedding.weight", PatchEmbeddingWeight),
        ("patch_embedding.bias", PatchEmbeddingBias),
        ("position_embedding.weight", PositionEmbedding),
    ];
}

/// <summary>Idefics3VisionAttention: bidirectional multi-head attention with biased projections; masked patches are masked as keys only.</summary>
public sealed class SiglipAttention(VisionConfig config, Linear qProj, Linear kProj, Linear vProj, Linear outProj)
{
    public Linear QProj { get; } = qProj;

    public Linear KProj { get; } = kProj;

    public Linear VProj { get; } = vProj;

    public Linear OutProj { get; } = outProj;

    public static SiglipAttention Load(Weights w, VisionConfig c) => new(c,
        Linear.Load(w.Sub("q_proj"), c.HiddenSize, c.HiddenSize, hasBias: true),
        Linear.Load(w.Sub("k_proj"), c.HiddenSize, c.HiddenSize, hasBias: true),
        Linear.Load(w.Sub("v_proj"), c.HiddenSize, c.HiddenSize, hasBias: true),
        Linear.Load(w.Sub("out_proj"), c.HiddenSize, c.HiddenSize, hasBias: true));

    /// <summary>In transformers' registration order: k, v, q, out.</summary>
    public IEnumerable<Linear> Linears => [KProj, VProj, QProj, OutProj];

    /// <param name="x">[n, patches, hidden]</param>
    /// <param name="keyMask">[n, patches] u8, 1 = attend; null when every patch is valid.</param>
    public Tensor Forward(Tensor x, Tensor? keyMask)
    {
        long n = x.Dim(0), t = x.Dim(1);
        int heads = config.NumAttentionHeads, headDim = config.HeadDim;
        Tensor q = QProj.Forward(x).Reshape(n, t, heads, headDim);
        Tensor k = KProj.Forward(x).Reshape(n, t, heads, headDim);
        Tensor v = VProj.Forward(x).Reshape(n, t, heads, headDim);
        // HF multiplies the float32 scores by the Python float head_dim ** -0.5, which torch rounds to float32.
        Tensor attended = Ops.Attention(q, k, v, keyMask, causal: false, scale: (float)Math.Pow(headDim, -0.5));
        return OutProj.Forward(attended.Reshape(n, t, config.HiddenSize));
    }

    public IEnumerable<(string Name, Tensor Tensor)> NamedParameters =>
        SiglipVisionModel.Prefixed("q_proj", QProj.NamedParameters)
            .Concat(SiglipVisionModel.Prefixed("k_proj", KProj.NamedParameters))
            .Concat(SiglipVisionModel.Prefixed("v_proj", VProj.NamedParameters))
            .Concat(SiglipVisionModel.Prefixed("out_proj", OutProj.NamedParameters));
}

/// <summary>Idefics3VisionMLP: fc1 → gelu_pytorch_tanh → fc2.</summary>
public sealed class SiglipMlp(Linear fc1, Linear fc2)
{
    public Linear Fc1 { get; } = fc1;

    public Linear Fc2 { get; } = fc2;

    public static SiglipMlp Load(Weights w, VisionConfig c) => new(
        Linear.Load(w.Sub("fc1"), c.HiddenSize, c.IntermediateSize, hasBias: true),
        Linear.Load(w.Sub("fc2"), c.IntermediateSize, c.HiddenSize, hasBias: true));

    public IEnumerable<Linear> Linears => [Fc1, Fc2];

    /// <summary>[..., hidden] → [..., intermediate] → [..., hidden].</summary>
    public Tensor Forward(Tensor x) => Fc2.Forward(Ops.Gelu(Fc1.Forward(x)));

    public IEnumerable<(string Name, Tensor Tensor)> NamedParameters =>
        SiglipVisionModel.Prefixed("fc1", Fc1.NamedParameters).Concat(SiglipVisionModel.Prefixed("fc2", Fc2.NamedParameters));
}

/// <summary>Idefics3EncoderLayer, pre-LN: x + attn(ln1(x)), then x + mlp(ln2(x)).</summary>
public sealed class SiglipEncoderLayer(SiglipLayerNorm layerNorm1, SiglipAttention selfAttn, SiglipLayerNorm layerNorm2, SiglipMlp mlp)
{
    public SiglipLayerNorm LayerNorm1 { get; } = layerNorm1;

    public SiglipAttention SelfAttn { get; } = selfAttn;

    public SiglipLayerNorm LayerNorm2 { get; } = layerNorm2;

    public SiglipMlp Mlp { get; } = mlp;

    public static SiglipEncoderLayer Load(Weights w, VisionConfig c) => new(
        SiglipLayerNorm.Load(w.Sub("layer_norm1"), c.HiddenSize, c.LayerNormEps),
        SiglipAttention.Load(w.Sub("self_attn"), c),
        SiglipLayerNorm.Load(w.Sub("layer_norm2"), c.HiddenSize, c.LayerNormEps),
        SiglipMlp.Load(w.Sub("mlp"), c));

    /// <param name="x">[n, patches, hidden]</param>
    /// <param name="keyMask">[n, patches] u8 or null.</param>
    public Tensor Forward(Tensor x, Tensor? keyMask)
    {
        Tensor h = Ops.Residual(x, SelfAttn.Forward(LayerNorm1.Forward(x), keyMask));
        return Ops.Residual(h, Mlp.Forward(LayerNorm2.Forward(h)));
    }

    public IEnumerable<Linear> Linears => SelfAttn.Linears.Concat(Mlp.Linears);

    public IEnumerable<(string Name, Tensor Tensor)> NamedParameters =>
        SiglipVisionModel.Prefixed("layer_norm1", LayerNorm1.NamedParameters)
            .Concat(SiglipVisionModel.Prefixed("self_attn", SelfAttn.NamedParameters))
            .Concat(SiglipVisionModel.Prefixed("layer_norm2", LayerNorm2.NamedParameters))
            .Concat(SiglipVisionModel.Prefixed("mlp", Mlp.NamedParameters));
}

/// <summary>
/// Idefics3VisionTransformer: embeddings, the encoder layers, post_layernorm. Takes the real frames
/// only (<see cref="RealFramesAndPatchMask"/> drops padded slots) and returns last_hidden_state.
/// </summary>
public sealed class SiglipVisionModel : IDisposable
{
    private SiglipVisionModel(VisionConfig config, SiglipVisionEmbeddings embeddings, IReadOnlyList<SiglipEncoderLayer> layers,
        SiglipLayerNorm postLayernorm)
    {
        Config = config;
        Embeddings = embeddings;
        Layers = layers;
        PostLayernorm = postLayernorm;
    }

    public VisionConfig Config { get; }

    public SiglipVisionEmbeddings Embeddings { get; }

    /// <summary>encoder.layers.N</summary>
    public IReadOnlyList<SiglipEncoderLayer> Layers { get; }

    public SiglipLayerNorm PostLayernorm { get; }

    /// <summary>
    /// Runs each encoder layer under <see cref="Checkpoint.Run"/> while a tape records: its activations
    /// are recomputed during backward instead of being kept.
    /// </summary>
    public bool GradientCheckpointing { get; set; }

    /// <param name="w">The weights under model.vision_model.</param>
    public static SiglipVisionModel Load(Weights w, VisionConfig config)
    {
        Weights layers = w.Sub("encoder").Sub("layers");
        return new SiglipVisionModel(config,
            SiglipVisionEmbeddings.Load(w.Sub("embeddings"), config),
            Enumerable.Range(0, config.NumHiddenLayers).Select(i => SiglipEncoderLayer.Load(layers.Sub($"{i}"), config)).ToList(),
            SiglipLayerNorm.Load(w.Sub("post_layernorm"), config.HiddenSize, config.LayerNormEps));
    }

    /// <summary>Every parameter with its checkpoint name below model.vision_model, in module order.</summary>
    public IEnumerable<(string Name, Tensor Tensor)> NamedParameters =>
        Prefixed("embeddings", Embeddings.NamedParameters)
            .Concat(Layers.SelectMany((layer, i) => Prefixed($"encoder.layers.{i}", layer.NamedParameters)))
            .Concat(Prefixed("post_layernorm", PostLayernorm.NamedParameters));

    public IEnumerable<Tensor> Parameters => NamedParameters.Select(p => p.Tensor);

    /// <summary>Every Linear module, layer by layer, in transformers' registration order.</summary>
    public IEnumerable<Linear> Linears => Layers.SelectMany(layer => layer.Linears);

    internal static IEnumerable<(string Name, Tensor Tensor)> Prefixed(string prefix, IEnumerable<(string Name, Tensor Tensor)> parameters) =>
        parameters.Select(p => ($"{prefix}.{p.Name}", p.Tensor));

    /// <summary>
    /// last_hidden_state [n, patches, hidden] (after post_layernorm) of <paramref name="pixelValues"/>
    /// [n, channels, h, w], patches = ⌊h / patch⌋·⌊w / patch⌋ (like the conv, the rows and columns
    /// beyond the last whole patch are never read). Tensors made here belong to the current
    /// scope (the key mask with them, which a checkpointed layer's rerun reads again); under a
    /// recording tape the result is differentiable in every parameter. Traces
    /// "vision.embeddings", "vision.layer_output.N" and "vision.last_hidden_state".
    /// </summary>
    /// <param name="pixelValues">Real frames only, f32.</param>
    /// <param name="patchMask">[n, ⌊h / patch⌋, ⌊w / patch⌋]: 1 where the patch holds a valid pixel.</param>
    public Tensor Forward(Tensor pixelValues, byte[] patchMask, Trace? trace = null)
    {
        if (pixelValues.Rank != 4 || pixelValues.Dim(1) != Config.NumChannels)
        {
            throw new ArgumentException($"pixel values must be [frames, {Config.NumChannels} channels, height, width], got {pixelValues}");
        }
        int patch = Config.PatchSize;
        int frames = (int)pixelValues.Dim(0), rows = (int)(pixelValues.Dim(2) / patch), cols = (int)(pixelValues.Dim(3) / patch);
        if (rows == 0 || cols == 0)
        {
            throw new ArgumentException($"pixel values {pixelValues} are smaller than one {patch}×{patch} patch");
        }
        int[] positionIds = SiglipVisionEmbeddings.PositionIds(patchMask, frames, rows, cols, Config.PatchesPerSide);

        Context ctx = pixelValues.Context;
        // Embedding's backward reads the ids and attention's the mask: they live as long as the scope's
        // activations. With no scope there is no tape either, and they go with this call.
        TensorScope? scope = TensorScope.Current;
        var uploads = new List<Tensor>();
        Tensor Upload(Tensor t)
        {
            uploads.Add(t);
            return scope?.Own(t) ?? t;
        }
        try
        {
            Tensor ids = Upload(Tensor.FromArray(ctx, positionIds, frames, (long)rows * cols));
            // Like HF, which passes no mask at all then, a grid of valid patches needs none.
            Tensor? keyMask = patchMask.Contains((byte)0) ? Upload(Tensor.FromArray(ctx, patchMask, frames, (long)rows * cols)) : null;

            Tensor h = Embeddings.Forward(CropToPatchGrid(pixelValues, Upload), ids); // (n, patches, hidden)
            trace?.Invoke("vision.embeddings", h);
            for (int i = 0; i < Layers.Count; i++)
            {
                SiglipEncoderLayer layer = Layers[i];
                // Forward only: a checkpointed layer's rerun happens in backward, outside this range.
                // The layer's own scope frees its intermediates when its forward ends, and its input goes once
                // the layer is past it; the tape keeps what backward reads.
                Tensor layerInput = h;
                using (ctx.Range($"vision.layers.{i}"))
                using (var layerScope = new TensorScope())
                {
                    h = layerScope.Keep(GradientCheckpointing ? Checkpoint.Run(x => layer.Forward(x, keyMask), h) : layer.Forward(h, keyMask));
                }
                layerInput.Dispose();
                trace?.Invoke($"vision.layer_output.{i}", h);
            }
            Tensor lastLayerOutput = h;
            h = PostLayernorm.Forward(h);
            lastLayerOutput.Dispose();
            trace?.Invoke("vision.last_hidden_state", h);
            return h;
        }
        finally
        {
            if (scope == null)
            {
                uploads.ForEach(t => t.Dispose());
            }
        }
    }

    /// <summary>
    /// The stride-patch conv ignores the last h mod patch rows and w mod patch columns (SmolVLM-Instruct:
    /// 384 px, patch 14: 378 used), and Patchify takes exact multiples, so the used part is gathered
    /// with Embedding: the frames as a table of chunks of g = gcd(w, used w) values, of which each used
    /// pixel row contributes its first used w / g. [n, c, h, w] → [n, c, used h, used w].
    /// </summary>
    private Tensor CropToPatchGrid(Tensor pixels, Func<Tensor, Tensor> upload)
    {
        int patch = Config.PatchSize;
        long planes = pixels.Dim(0) * pixels.Dim(1), height = pixels.Dim(2), width = pixels.Dim(3);
        long usedHeight = height / patch * patch, usedWidth = width / patch * patch;
        if (usedHeight == height && usedWidth == width)
        {
            return pixels;
        }
        long chunk = (long)System.Numerics.BigInteger.GreatestCommonDivisor(width, usedWidth);
        long chunksPerRow = width / chunk, usedChunksPerRow = usedWidth / chunk;
        var chunkIds = new int[checked((int)(planes * usedHeight * usedChunksPerRow))];
        int next = 0;
        for (long plane = 0; plane < planes; plane++)
        {
            for (long y = 0; y < usedHeight; y++)
            {
                for (long x = 0; x < usedChunksPerRow; x++)
                {
                    chunkIds[next++] = checked((int)((plane * height + y) * chunksPerRow + x));
                }
            }
        }
        Tensor ids = upload(Tensor.FromArray(pixels.Context, chunkIds, chunkIds.Length));
        Tensor used = Ops.Embedding(pixels.Reshape(planes * height * chunksPerRow, chunk), ids); // (chunks, g)
        return used.Reshape(pixels.Dim(0), pixels.Dim(1), usedHeight, usedWidth);
    }

    /// <summary>
    /// The frames the vision tower sees, as Idefics3Model.forward (v4.46.3) selects them from a batch:
    /// padded slots — every pixel value 0.0 — are dropped, and a patch is valid when any pixel of its
    /// patch × patch block is valid in pixel_attention_mask (unfold, sum > 0; the rows and columns
    /// beyond the last whole patch are ignored, as the conv ignores them).
    /// </summary>
    /// <param name="pixelValues">[batch, slots, channels, h, w]</param>
    /// <param name="pixelShape">{batch, slots, channels, h, w}</param>
    /// <param name="pixelAttentionMask">[batch, slots, h, w], nonzero = valid pixel.</param>
    /// <returns>Frames [frameCount, channels, h, w] in (sample, slot) order, and their patch mask [frameCount, h / patch, w / patch].</returns>
    public static (float[] Frames, int FrameCount, byte[] PatchMask) RealFramesAndPatchMask(
        float[] pixelValues, int[] pixelShape, byte[] pixelAttentionMask, int patchSize)
    {
        if (pixelShape.Length != 5)
        {
            throw new ArgumentException($"pixel_values must be [batch, slots, channels, height, width], got [{string.Join(", ", pixelShape)}]");
        }
        int slots = pixelShape[0] * pixelShape[1], height = pixelShape[3], width = pixelShape[4];
        int frameSize = pixelShape[2] * height * width, planeSize = height * width;
        if (pixelValues.Length != slots * frameSize || pixelAttentionMask.Length != slots * planeSize)
        {
            throw new ArgumentException(
                $"pixel_values ({pixelValues.Length} values) and pixel_attention_mask ({pixelAttentionMask.Length}) do not fit [{string.Join(", ", pixelShape)}]");
        }
        int rows = height / patchSize, cols = width / patchSize;

        int[] realSlots = Enumerable.Range(0, slots).Where(slot => IsReal(pixelValues.AsSpan(slot * frameSize, frameSize))).ToArray();
        var frames = new float[realSlots.Length * frameSize];
        var patchMask = new byte[realSlots.Length * rows * cols];
        for (int f = 0; f < realSlots.Length; f++)
        {
            pixelValues.AsSpan(realSlots[f] * frameSize, frameSize).CopyTo(frames.AsSpan(f * frameSize));
            ReadOnlySpan<byte> mask = pixelAttentionMask.AsSpan(realSlots[f] * planeSize, planeSize);
            for (int r = 0; r < rows; r++)
            {
                for (int c = 0; c < cols; c++)
                {
                    bool valid = false;
                    for (int y = r * patchSize; y < (r + 1) * patchSize; y++)
                    {
                        valid |= mask.Slice(y * width + c * patchSize, patchSize).ContainsAnyExcept((byte)0);
                    }
                    patchMask[(f * rows + r) * cols + c] = valid ? (byte)1 : (byte)0;
                }
            }
        }
        return (frames, realSlots.Length, patchMask);
    }

    /// <summary>HF drops a slot whose values all compare == 0.0: -0.0 counts as padding, NaN as an image.</summary>
    private static bool IsReal(ReadOnlySpan<float> frame)
    {
        foreach (float v in frame)
        {
            if (v != 0f)
            {
                return true;
            }
        }
        return false;
    }

    public void Dispose()
    {
        foreach (Linear linear in Linears)
        {
            linear.Dispose();
        }
        IEnumerable<(string Name, Tensor Tensor)> others = Embeddings.NamedParameters
            .Concat(Layers.SelectMany(l => l.LayerNorm1.NamedParameters.Concat(l.LayerNorm2.NamedParameters)))
            .Concat(PostLayernorm.NamedParameters);
        foreach ((_, Tensor t) in others)
        {
            t.Dispose();
        }
    }
}
