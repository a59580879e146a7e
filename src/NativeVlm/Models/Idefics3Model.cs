using NativeVlm.Autograd;
using NativeVlm.IO;
using NativeVlm.Nn;
using NativeVlm.Quantization;
using NativeVlm.Tensors;

namespace NativeVlm.Models;

/// <summary>
/// Idefics3ForConditionalGeneration (SmolVLM, SmolVLM2, and stitched models with a Qwen3 decoder):
/// the SigLIP vision tower encodes the real image frames, the connector pixel-shuffles and projects
/// them to the text width, the features replace the embeddings of the image tokens, the decoder
/// runs, and the LM head (lm_head.weight, or the token embeddings when tied) scores the vocabulary.
/// Every nn.Linear of transformers' model is an Nn.Linear module (<see cref="Linears"/>) except the
/// LM head, which the chunked log-prob op reads as a plain matrix (and which may be the embeddings).
/// </summary>
public sealed class Idefics3Model : IDisposable
{
    public Idefics3Config Config { get; }

    public SiglipVisionModel Vision { get; }

    public Idefics3Connector Connector { get; }

    public TextDecoder Text { get; }

    /// <summary>[vocab, text hidden]: lm_head.weight, or Text.EmbedTokens when tie_word_embeddings.</summary>
    public Tensor LmHead { get; }

    private readonly bool _lmHeadIsTied;

    private Idefics3Model(Idefics3Config config, SiglipVisionModel vision, Idefics3Connector connector, TextDecoder text,
        Tensor lmHead, bool lmHeadIsTied)
    {
        Config = config;
        Vision = vision;
        Connector = connector;
        Text = text;
        LmHead = lmHead;
        _lmHeadIsTied = lmHeadIsTied;
        Linears = vision.Linears.Append(connector.Projection).Concat(text.Linears).ToList();
    }

    /// <summary>
    /// Every Linear module (vision tower, connector, text model) in transformers' registration
    /// order, which is the order of the modules in PEFT's adapter files.
    /// </summary>
    public IReadOnlyList<Linear> Linears { get; }

    /// <summary>
    /// Gradient checkpointing of every vision encoder layer and every decoder layer (training's
    /// gradient_checkpointing): sets <see cref="SiglipVisionModel.GradientCheckpointing"/> and
    /// <see cref="TextDecoder.GradientCheckpointing"/>; reads true when both are on.
    /// </summary>
    public bool GradientCheckpointing
    {
        get => Vision.GradientCheckpointing && Text.GradientCheckpointing;
        set => Vision.GradientCheckpointing = Text.GradientCheckpointing = value;
    }

    /// <summary>
    /// Loads config.json and the (sharded) safetensors of a snapshot folder into <paramref name="context"/>,
    /// then quantises the Linear base weights as <paramref name="quantization"/> says (see <see cref="QuantizeLinears"/>).
    /// </summary>
    public static Idefics3Model Load(string snapshotDir, Context context, BaseWeightQuantization quantization = BaseWeightQuantization.None)
    {
        Idefics3Config config = Idefics3Config.Load(Path.Combine(snapshotDir, Idefics3Config.FileName));
        Idefics3Model model;
        using (SafeTensorsReader reader = SafeTensorsReader.Open(snapshotDir))
        {
            model = Load(new Weights(reader, context), config);
        }
        if (quantization == BaseWeightQuantization.Nf4)
        {
            try
            {
                model.QuantizeLinears();
            }
            catch
            {
                model.Dispose();
                throw;
            }
        }
        return model;
    }

    /// <summary>What <see cref="QuantizeLinears"/> saved; null while the base weights are dense.</summary>
    public QuantizationReport? Quantization { get; private set; }

    /// <summary>
    /// Replaces the dense base weight of every Linear module in <see cref="Linears"/> by its NF4 form, as
    /// transformers' bitsandbytes 4-bit loading does for a QLoRA model: it converts every nn.Linear except
    /// the modules get_keys_to_not_convert returns (the output embedding lm_head and weights tied to it)
    /// and those in llm_int8_skip_modules (empty by default), and Idefics3 declares no
    /// _keep_in_fp32_modules. So the vision tower's q/k/v/out_proj and fc1/fc2, the connector's
    /// projection and every decoder projection are quantised; the LM head, the embeddings, the
    /// patch-embedding convolution and the norms stay f32. Returns (and keeps) the bytes saved.
    /// </summary>
    public QuantizationReport QuantizeLinears()
    {
        if (Quantization != null)
        {
            throw new InvalidOperationException("the base weights are already quantised");
        }
        long before = 0, after = 0;
        foreach (Linear linear in Linears)
        {
            Nf4LinearWeight quantized = Nf4LinearWeight.Quantize(linear.Weight.ToDense());
            before += linear.OutFeatures * linear.InFeatures * sizeof(float);
            after += quantized.Weight.ByteCount;
            linear.ReplaceWeight(quantized);
        }
        Quantization = new QuantizationReport(Linears.Count, before, after);
        return Quantization;
    }

    /// <summary>Builds the model from <paramref name="weights"/>; every tensor problem is reported at once.</summary>
    public static Idefics3Model Load(Weights weights, Idefics3Config config)
    {
        Weights model = weights.Sub("model");
        SiglipVisionModel vision = SiglipVisionModel.Load(model.Sub("vision_model"), config.Vision);
        Idefics3Connector connector = Idefics3Connector.Load(model.Sub("connector"), config);
        TextDecoder text = TextDecoder.Load(model.Sub("text_model"), config.Text);
        bool tied = config.TieWordEmbeddings;
        Tensor lmHead;
        if (tied)
        {
            // save_pretrained drops the tied copy; a file that still has it holds the same values.
            weights.Ignore("lm_head.weight");
            lmHead = text.EmbedTokens;
        }
        else
        {
            lmHead = weights.Get("lm_head.weight", config.Text.VocabSize, config.Text.HiddenSize);
        }
        var result = new Idefics3Model(config, vision, connector, text, lmHead, tied);
        try
        {
            weights.ThrowIfInvalid();
        }
        catch
        {
            result.Dispose();
            throw;
        }
        return result;
    }

    /// <summary>
    /// The Linear modules <see cref="Load(Weights, Idefics3Config)"/> builds for <paramref name="config"/>,
    /// in the order of <see cref="Linears"/>, without building any tensor.
    /// </summary>
    public static IReadOnlyList<LinearShape> LinearShapes(Idefics3Config config)
    {
        VisionConfig v = config.Vision;
        TextConfig t = config.Text;
        long queryWidth = (long)t.NumAttentionHeads * t.HeadDim, keyValueWidth = (long)t.NumKeyValueHeads * t.HeadDim;
        var shapes = new List<LinearShape>();
        for (int i = 0; i < v.NumHiddenLayers; i++)
        {
            string layer = $"model.vision_model.encoder.layers.{i}";
            foreach (string projection in new[] { "k_proj", "v_proj", "q_proj", "out_proj" })
            {
                shapes.Add(new LinearShape($"{layer}.self_attn.{projection}", v.HiddenSize, v.HiddenSize, HasBias: true));
            }
            shapes.Add(new LinearShape($"{layer}.mlp.fc1", v.HiddenSize, v.IntermediateSize, HasBias: true));
            shapes.Add(new LinearShape($"{layer}.mlp.fc2", v.IntermediateSize, v.HiddenSize, HasBias: true));
        }
        shapes.Add(new LinearShape("model.connector.modality_projection.proj", config.ConnectorInputSize, t.HiddenSize, HasBias: false));
        for (int i = 0; i < t.NumHiddenLayers; i++)
        {
            string layer = $"model.text_model.layers.{i}";
            shapes.Add(new LinearShape($"{layer}.self_attn.q_proj", t.HiddenSize, queryWidth, HasBias: false));
            shapes.Add(new LinearShape($"{layer}.self_attn.k_proj", t.HiddenSize, keyValueWidth, HasBias: false));
            shapes.Add(new LinearShape($"{layer}.self_attn.v_proj", t.HiddenSize, keyValueWidth, HasBias: false));
            shapes.Add(new LinearShape($"{layer}.self_attn.o_proj", queryWidth, t.HiddenSize, HasBias: false));
            shapes.Add(new LinearShape($"{layer}.mlp.gate_proj", t.HiddenSize, t.IntermediateSize, HasBias: false));
            shapes.Add(new LinearShape($"{layer}.mlp.up_proj", t.HiddenSize, t.IntermediateSize, HasBias: false));
            shapes.Add(new LinearShape($"{layer}.mlp.down_proj", t.IntermediateSize, t.HiddenSize, HasBias: false));
        }
        return shapes;
    }

    /// <summary>
    /// The number of parameters <see cref="Parameters"/> holds for <paramref name="config"/> (each
    /// once, a tied LM head not again), without building any tensor.
    /// </summary>
    public static long ParameterCount(Idefics3Config config)
    {
        VisionConfig v = config.Vision;
        TextConfig t = config.Text;
        long linears = LinearShapes(config).Sum(l => l.InFeatures * l.OutFeatures + (l.HasBias ? l.OutFeatures : 0));
        long patchEmbedding = (long)v.HiddenSize * v.NumChannels * v.PatchSize * v.PatchSize + v.HiddenSize;
        long positionEmbedding = (long)v.NumPatches * v.HiddenSize;
        long visionLayerNorms = (2L * v.NumHiddenLayers + 1) * 2 * v.HiddenSize; // layer_norm1, layer_norm2 per layer, post_layernorm; weight and bias
        long embedTokens = (long)t.VocabSize * t.HiddenSize;
        long textNorms = (2L * t.NumHiddenLayers + 1) * t.HiddenSize                    // input/post-attention norms per layer, final norm
                         + (t.HasQkNorm ? 2L * t.NumHiddenLayers * t.HeadDim : 0);      // Qwen3's q_norm and k_norm
        long lmHead = config.TieWordEmbeddings ? 0 : embedTokens;
        return linears + patchEmbedding + positionEmbedding + visionLayerNorms + embedTokens + textNorms + lmHead;
    }

    /// <summary>Every parameter once (a tied LM head is the token embedding).</summary>
    public IEnumerable<Tensor> Parameters =>
        Vision.Parameters.Concat(Connector.Parameters).Concat(Text.Parameters).Concat(_lmHeadIsTied ? [] : [LmHead]);

    /// <summary>
    /// The decoder's final-normed hidden states [batch, seq, text hidden] for <paramref name="inputs"/>;
    /// tensors belong to the current scope.
    /// </summary>
    public Tensor Forward(Idefics3Inputs inputs, Trace? trace = null) =>
        Forward(inputs, inputs.PixelValues != null ? ImageFeatures(inputs, trace) : null, featureRows: null, trace);

    /// <summary>
    /// <see cref="Forward(Idefics3Inputs, Trace?)"/> with the image features computed elsewhere (by
    /// <see cref="ImageFeatures"/>, possibly of other inputs), so rows can share one encoding: DPO's
    /// chosen and rejected rows of a pair encode their image once. <paramref name="imageFeatures"/> is
    /// [n, text hidden]; <paramref name="featureRows"/>[i] is the row of it that replaces the embedding of
    /// the i-th image token of inputs.InputIds (row-major), or null for rows 0, 1, … in order. Each use of a
    /// feature row adds its gradient into <paramref name="imageFeatures"/>' gradient. inputs' pixels are not read.
    /// </summary>
    public Tensor Forward(Idefics3Inputs inputs, Tensor? imageFeatures, int[]? featureRows, Trace? trace = null)
    {
        TensorScope scope = TensorScope.Current
            ?? throw new InvalidOperationException("Idefics3Model.Forward runs inside a TensorScope (or a Tape) that owns its tensors");
        Tensor embeds = MergedEmbeddings(inputs, imageFeatures, featureRows, scope);
        Tensor attention = scope.Own(Tensor.FromArray(LmHead.Context, inputs.AttentionMask, inputs.Batch, inputs.SeqLen));
        return Text.Forward(embeds, attention, trace);
    }

    /// <summary>
    /// The prefill of generation: the image features computed once and merged into the prompt's
    /// embeddings as <see cref="Forward(Idefics3Inputs, Trace?)"/> does, the decoder run over the prompt
    /// filling the empty <paramref name="cache"/>, and the logits of each row's last token: [batch, vocab],
    /// in the current scope. Later tokens go through <see cref="DecodeStep"/>, which never reads pixels
    /// (transformers merges image features only while the cache is empty).
    /// </summary>
    public Tensor Prefill(Idefics3Inputs inputs, KvCache cache)
    {
        TensorScope scope = TensorScope.Current
            ?? throw new InvalidOperationException("Idefics3Model.Prefill runs inside a TensorScope that owns its tensors");
        if (cache.Length != 0)
        {
            throw new ArgumentException($"the prefill needs an empty KV cache; this one holds {cache.Length} tokens");
        }
        Tensor embeds = MergedEmbeddings(inputs, inputs.PixelValues != null ? ImageFeatures(inputs) : null, featureRows: null, scope);
        Tensor hidden = Text.Forward(embeds, inputs.AttentionMask, cache);           // (batch, seq, hidden)
        int[] lastRows = Enumerable.Range(0, inputs.Batch).Select(b => (b + 1) * inputs.SeqLen - 1).ToArray();
        Tensor last = Ops.Embedding(hidden.Reshape(-1, Config.Text.HiddenSize),
            scope.Own(Tensor.FromArray(LmHead.Context, lastRows, lastRows.Length)));  // (batch, hidden)
        return Logits(last);
    }

    /// <summary>
    /// One decode step: <paramref name="tokenIds"/> (one per row of the cache) are embedded, run through
    /// the decoder against everything cached (and cached themselves), and scored: [batch, vocab] logits,
    /// in the current scope.
    /// </summary>
    public Tensor DecodeStep(int[] tokenIds, KvCache cache)
    {
        TensorScope scope = TensorScope.Current
            ?? throw new InvalidOperationException("Idefics3Model.DecodeStep runs inside a TensorScope that owns its tensors");
        if (tokenIds.Length != cache.Batch)
        {
            throw new ArgumentException($"a decode step takes one token per row: {tokenIds.Length} tokens for a batch of {cache.Batch}");
        }
        Tensor embeds = Text.Embed(scope.Own(Tensor.FromArray(LmHead.Context, tokenIds, cache.Batch, 1)));   // (batch, 1, hidden)
        byte[] real = Enumerable.Repeat((byte)1, cache.Batch).ToArray();
        Tensor hidden = Text.Forward(embeds, real, cache);                                                  // (batch, 1, hidden)
        return Logits(hidden.Reshape(cache.Batch, Config.Text.HiddenSize));
    }

    /// <summary>
    /// The token embeddings of inputs.InputIds [batch, seq, hidden] with the image features in place of
    /// the image tokens' (see <see cref="Forward(Idefics3Inputs, Tensor?, int[]?, Trace?)"/>).
    /// </summary>
    private Tensor MergedEmbeddings(Idefics3Inputs inputs, Tensor? imageFeatures, int[]? featureRows, TensorScope scope)
    {
        Context ctx = LmHead.Context;
        int batch = inputs.Batch, seq = inputs.SeqLen, hidden = Config.Text.HiddenSize;

        Tensor ids = scope.Own(Tensor.FromArray(ctx, inputs.InputIds, batch, seq));
        Tensor embeds = Text.Embed(ids);                                             // (batch, seq, hidden)

        int[] imagePositions = inputs.InputIds.Select((id, i) => (id, i)).Where(p => p.id == Config.ImageTokenId)
            .Select(p => p.i).ToArray();
        if (imageFeatures != null)
        {
            Tensor features = imageFeatures;
            if (featureRows != null)
            {
                if (featureRows.Length != imagePositions.Length)
                {
                    throw new ArgumentException(
                        $"input_ids hold {imagePositions.Length} image tokens (id {Config.ImageTokenId}) but {featureRows.Length} feature rows were given");
                }
                int bad = Array.FindIndex(featureRows, r => r < 0 || r >= imageFeatures.Dim(0));
                if (bad >= 0)
                {
                    throw new ArgumentException($"feature row {featureRows[bad]} (image token {bad}) is outside the {imageFeatures.Dim(0)} image features");
                }
                Tensor rows = scope.Own(Tensor.FromArray(ctx, featureRows, featureRows.Length));
                features = Ops.Embedding(imageFeatures, rows);                       // (image tokens, hidden); backward scatter-adds
            }
            if (features.Dim(0) != imagePositions.Length)
            {
                throw new ArgumentException(
                    $"input_ids hold {imagePositions.Length} image tokens (id {Config.ImageTokenId}) but the images give " +
                    $"{features.Dim(0)} image features ({features.Dim(0) / Config.ImageSeqLen} frames × {Config.ImageSeqLen})");
            }
            Tensor positions = scope.Own(Tensor.FromArray(ctx, imagePositions, imagePositions.Length));
            embeds = Ops.IndexCopy(embeds.Reshape(batch * seq, hidden), features, positions).Reshape(batch, seq, hidden);
        }
        else if (imagePositions.Length > 0)
        {
            throw new ArgumentException($"input_ids hold {imagePositions.Length} image tokens but no pixel_values were given");
        }
        return embeds;
    }

    /// <summary>Connector outputs of the real frames, flattened: [frames·image_seq_len, text hidden].</summary>
    public Tensor ImageFeatures(Idefics3Inputs inputs, Trace? trace = null)
    {
        Context ctx = LmHead.Context;
        TensorScope scope = TensorScope.Current!;
        (float[] frames, int frameCount, byte[] patchMask) = SiglipVisionModel.RealFramesAndPatchMask(
            inputs.PixelValues!, inputs.PixelShape!, inputs.PixelAttentionMask!, Config.Vision.PatchSize);
        int[] shape = inputs.PixelShape!;
        Tensor pixels = scope.Own(Tensor.FromArray(ctx, frames, frameCount, shape[2], shape[3], shape[4]));
        Tensor visionHidden = Vision.Forward(pixels, patchMask, trace);               // (frames, patches, vision hidden)
        Tensor features = Connector.Forward(visionHidden, trace);                     // (frames, image_seq_len, text hidden)
        return features.Reshape(-1, Config.Text.HiddenSize);
    }

    /// <summary>logits = hidden · lm_headᵀ: [batch, seq, vocab]. Only for short inputs: it holds the whole vocabulary.</summary>
    public Tensor Logits(Tensor hidden)
    {
        using (LmHead.Context.Range("lm_head"))
        {
            return Ops.Linear(hidden, LmHead);
        }
    }

    /// <summary>
    /// log_softmax(logits[b, t])[input_ids[b, t + 1]] for t &lt; seq − 1, as [batch, seq] with 0 in the
    /// last column, computed in vocabulary chunks (no [tokens, vocab] matrix).
    /// </summary>
    public Tensor NextTokenLogProbs(Tensor hidden, Idefics3Inputs inputs)
    {
        using (LmHead.Context.Range("lm_head.log_probs"))
        {
            return Ops.LmLogProb(hidden, LmHead, ShiftedTargets(inputs.InputIds, inputs));
        }
    }

    /// <summary>transformers' causal-LM loss: mean cross-entropy of labels[t + 1] given tokens ≤ t.</summary>
    public Tensor Loss(Tensor hidden, Idefics3Inputs inputs)
    {
        using (LmHead.Context.Range("lm_head.loss"))
        {
            return Ops.CrossEntropy(hidden, LmHead, ShiftedTargets(inputs.Labels ?? throw new ArgumentException("the inputs have no labels"), inputs));
        }
    }

    /// <summary>targets[b, t] = source[b, t + 1]; the last position of every row is ignored (−100).</summary>
    private Tensor ShiftedTargets(int[] source, Idefics3Inputs inputs)
    {
        int batch = inputs.Batch, seq = inputs.SeqLen;
        var targets = new int[batch * seq];
        for (int b = 0; b < batch; b++)
        {
            for (int t = 0; t < seq; t++)
            {
                targets[b * seq + t] = t + 1 < seq ? source[b * seq + t + 1] : Ops.IgnoreIndex;
            }
        }
        return TensorScope.Current!.Own(Tensor.FromArray(LmHead.Context, targets, batch, seq));
    }

    public void Dispose()
    {
        Vision.Dispose();
        Connector.Dispose();
        Text.Dispose();
        if (!_lmHeadIsTied)
        {
            LmHead.Dispose();
        }
    }
}
