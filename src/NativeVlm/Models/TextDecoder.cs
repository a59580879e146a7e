using NativeVlm.Autograd;
using NativeVlm.Interop;
using NativeVlm.Nn;
using NativeVlm.Tensors;

namespace NativeVlm.Models;

/// <summary>What every layer's attention reads besides the hidden states; made once per forward.</summary>
/// <param name="Positions">int32 (batch, seq): the RoPE position of each token.</param>
/// <param name="InvFreq">(head_dim / 2): the RoPE frequencies.</param>
/// <param name="KeyMask">uint8 (batch, seq), 1 = real token; null = all real.</param>
/// <param name="Blind">The queries that see no key, or null when there is none.</param>
internal sealed record TextAttentionInputs(Tensor Positions, Tensor InvFreq, Tensor? KeyMask, BlindQueries? Blind);

/// <summary>
/// Query tokens whose causal window holds no real key (the left padding of a row). transformers
/// adds finfo(float32).min to each masked logit, which swallows the score, so such a row's logits are
/// all equal and its softmax is uniform over every key of the sequence, future ones included: the
/// output is the mean of v. The attention op gives such rows 0 instead; they are replaced.
/// </summary>
/// <param name="Rows">int32 (n): flat index b·seq + t of each such token.</param>
/// <param name="Batches">int32 (n): its row b.</param>
/// <param name="ZeroQuery">(batch, 1, heads, head_dim) zeros: attending with it weighs every key equally.</param>
internal sealed record BlindQueries(Tensor Rows, Tensor Batches, Tensor ZeroQuery);

/// <summary>
/// The keys and values of every decoder layer during one generate call: transformers' DynamicCache,
/// laid out ahead of time. Per layer, keys and values (batch, capacity, kv_heads, head_dim), the keys
/// after Qwen3's k-norm and RoPE as attention reads them. Slot t of a row holds the t-th token fed to
/// the decoder (the prompt with its left padding, then one generated token per step); <see cref="Mask"/>
/// says which slots hold real tokens, and a decode step attends to the whole capacity under it. Writing
/// a token is one buffer copy per row, so a step neither reallocates nor copies what is cached (a
/// concatenation would copy the whole cache every step). The buffers start zeroed: the slots the mask
/// hides are never garbage that a kernel could multiply by a zero weight into NaN.
/// </summary>
public sealed class KvCache : IDisposable
{
    private readonly Tensor[] _keys; // per layer (batch, capacity, kv_heads, head_dim)
    private readonly Tensor[] _values; // per layer (batch, capacity, kv_heads, head_dim)
    private readonly byte[] _mask; // (batch, capacity): 1 = a real token is cached in the slot
    private readonly int[] _realTokens; // (batch): real tokens cached so far, which is the RoPE position of the next one
    private readonly long _slotElements; // kv_heads · head_dim

    internal KvCache(Context context, TextConfig config, int batch, int capacity)
    {
        if (batch <= 0 || capacity <= 0)
        {
            throw new ArgumentException($"a KV cache needs a positive batch and capacity, got {batch} × {capacity}");
        }
        Batch = batch;
        Capacity = capacity;
        _slotElements = (long)config.NumKeyValueHeads * config.HeadDim;
        _keys = new Tensor[config.NumHiddenLayers];
        _values = new Tensor[config.NumHiddenLayers];
        try
        {
            for (int i = 0; i < config.NumHiddenLayers; i++)
            {
                _keys[i] = Tensor.Zeros(context, DType.F32, batch, capacity, config.NumKeyValueHeads, config.HeadDim);
                _values[i] = Tensor.Zeros(context, DType.F32, batch, capacity, config.NumKeyValueHeads, config.HeadDim);
            }
        }
        catch
        {
            Dispose();
            throw;
        }
        _mask = new byte[batch * capacity];
        _realTokens = new int[batch];
    }

    public int Batch { get; }

    /// <summary>Most tokens (prompt and generated) a row can hold.</summary>
    public int Capacity { get; }

    /// <summary>Slots written so far, the same in every row.</summary>
    public int Length { get; private set; }

    /// <summary>(batch, capacity), 1 = a real token is cached in the slot: the key mask of a decode step.</summary>
    internal byte[] Mask => _mask;

    internal Tensor Keys(int layer) => _keys[layer];

    internal Tensor Values(int layer) => _values[layer];

    /// <summary>
    /// Takes the next <paramref name="n"/> slots for tokens whose mask is <paramref name="attentionMask"/>
    /// (batch, n) and returns their RoPE positions (batch, n) as Idefics3's prepare_inputs_for_generation
    /// gives them: cumsum(attention_mask) − 1 over everything fed so far, and 1 at padded tokens.
    /// </summary>
    internal int[] Append(byte[] attentionMask, int n)
    {
        if (attentionMask.Length != Batch * n)
        {
            throw new ArgumentException($"KV cache: the attention mask has {attentionMask.Length} entries, not batch {Batch} × {n} tokens");
        }
        if (Length + n > Capacity)
        {
            throw new InvalidOperationException($"KV cache: {Length} slots used, {n} more do not fit in its capacity of {Capacity}");
        }
        var positions = new int[Batch * n];
        for (int b = 0; b < Batch; b++)
        {
            for (int t = 0; t < n; t++)
            {
                byte real = attentionMask[b * n + t];
                _mask[b * Capacity + Length + t] = real;
                positions[b * n + t] = real != 0 ? _realTokens[b]++ : 1;
            }
        }
        Length += n;
        return positions;
    }

    /// <summary>Copies k and v (batch, n, kv_heads, head_dim) into slots start..start+n−1 of layer <paramref name="layer"/>.</summary>
    internal void Write(int layer, int start, Tensor k, Tensor v)
    {
        long n = k.Dim(1);
        if (k.Rank != 4 || k.Dim(0) != Batch || k.ElementCount != Batch * n * _slotElements || !v.Shape.SequenceEqual(k.Shape) || start + n > Length)
        {
            throw new ArgumentException($"KV cache: k {k} and v {v} must be [{Batch}, n, kv_heads, head_dim] within the {Length} slots taken");
        }
        long bytes = n * _slotElements * sizeof(float);
        foreach ((Tensor cache, Tensor source) in new[] { (_keys[layer], k), (_values[layer], v) })
        {
            for (int b = 0; b < Batch; b++)
            {
                long destination = ((long)b * Capacity + start) * _slotElements * sizeof(float);
                Native.Check(NativeMethods.nvlm_buffer_copy(cache.Buffer, destination, source.Buffer, b * bytes, bytes));
            }
        }
    }

    public void Dispose()
    {
        foreach (Tensor? t in _keys.Concat(_values))
        {
            t?.Dispose();
        }
    }
}

/// <summary>
/// Self-attention of one decoder layer, as LlamaAttention (transformers v4.46.3) and Qwen3Attention
/// (v4.51.3) compute it eagerly: q/k/v projections, Qwen3's per-head RMSNorm of q and k, RoPE,
/// causal grouped-query attention scaled by head_dim^-0.5, output projection. No biases.
/// </summary>
internal sealed class TextAttention : IDisposable
{
    private readonly Linear _qProj; // hidden → heads·head_dim
    private readonly Linear _kProj; // hidden → kv_heads·head_dim
    private readonly Linear _vProj; // hidden → kv_heads·head_dim
    private readonly Linear _oProj; // heads·head_dim → hidden
    private readonly Tensor? _qNorm; // (head_dim), Qwen3 only
    private readonly Tensor? _kNorm; // (head_dim), Qwen3 only
    private readonly int _heads, _kvHeads, _headDim;
    private readonly float _eps, _scale;

    private TextAttention(Linear qProj, Linear kProj, Linear vProj, Linear oProj, Tensor? qNorm, Tensor? kNorm, TextConfig config)
    {
        (_qProj, _kProj, _vProj, _oProj, _qNorm, _kNorm) = (qProj, kProj, vProj, oProj, qNorm, kNorm);
        _heads = config.NumAttentionHeads;
        _kvHeads = config.NumKeyValueHeads;
        _headDim = config.HeadDim;
        _eps = (float)config.RmsNormEps;
        _scale = (float)(1.0 / Math.Sqrt(config.HeadDim));
    }

    /// <param name="w">Scoped to <c>layers.N.self_attn</c>.</param>
    public static TextAttention Load(Weights w, TextConfig config)
    {
        long hidden = config.HiddenSize, headDim = config.HeadDim;
        long queryWidth = config.NumAttentionHeads * headDim, keyValueWidth = config.NumKeyValueHeads * headDim;
        return new TextAttention(
            Linear.Load(w.Sub("q_proj"), hidden, queryWidth, hasBias: false),
            Linear.Load(w.Sub("k_proj"), hidden, keyValueWidth, hasBias: false),
            Linear.Load(w.Sub("v_proj"), hidden, keyValueWidth, hasBias: false),
            Linear.Load(w.Sub("o_proj"), queryWidth, hidden, hasBias: false),
            config.HasQkNorm ? w.Sub("q_norm").Get("weight", headDim) : null,
            config.HasQkNorm ? w.Sub("k_norm").Get("weight", headDim) : null,
            config);
    }

    /// <summary>q, k, v, o: transformers' registration order.</summary>
    public IEnumerable<Linear> Linears => [_qProj, _kProj, _vProj, _oProj];

    public IEnumerable<Tensor> Parameters =>
        Linears.SelectMany(l => l.Parameters).Concat(new[] { _qNorm, _kNorm }.OfType<Tensor>());

    /// <summary>x (batch, seq, hidden), already normed → (batch, seq, hidden).</summary>
    public Tensor Forward(Tensor x, TextAttentionInputs inputs)
    {
        long batch = x.Dim(0), seq = x.Dim(1);
        (Tensor q, Tensor k, Tensor v) = Project(x, inputs);
        Tensor attended = Ops.Attention(q, k, v, inputs.KeyMask, causal: true, _scale).Reshape(batch, seq, _heads * _headDim);
        if (inputs.Blind is { } blind)
        {
            Tensor mean = Ops.Attention(blind.ZeroQuery, k, v, keyMask: null, causal: false, _scale); // (batch, 1, heads, head_dim)
            Tensor rows = Ops.Embedding(mean.Reshape(batch, _heads * _headDim), blind.Batches);       // (n, heads·head_dim)
            attended = Ops.IndexCopy(attended.Reshape(batch * seq, _heads * _headDim), rows, blind.Rows)
                .Reshape(batch, seq, _heads * _headDim);
        }
        return _oProj.Forward(attended);
    }

    /// <summary>
    /// The cached path of generation: x (batch, n, hidden) are the tokens after the <paramref name="start"/>
    /// already cached; their keys and values go into layer <paramref name="layer"/> of the cache at slots
    /// start..start+n−1. The prefill (start 0) attends causally within the prompt as <see cref="Forward(Tensor, TextAttentionInputs)"/>
    /// does, with inputs.KeyMask the prompt's padding mask (batch, n). A decode step (n = 1) attends to every
    /// slot of the cache with inputs.KeyMask the cache's mask (batch, capacity): slots not yet written and
    /// left padding are 0, so causality is the mask's and the op's causal flag is off. Left-padding queries
    /// of the prefill see no key and get 0 where transformers averages v (<see cref="BlindQueries"/>); only
    /// the masked keys and values of padded slots depend on them, so no real token's output does.
    /// </summary>
    public Tensor Forward(Tensor x, TextAttentionInputs inputs, KvCache cache, int layer, int start)
    {
        long batch = x.Dim(0), seq = x.Dim(1);
        (Tensor q, Tensor k, Tensor v) = Project(x, inputs);
        cache.Write(layer, start, k, v);
        Tensor attended = start == 0
            ? Ops.Attention(q, k, v, inputs.KeyMask, causal: true, _scale)
            : Ops.Attention(q, cache.Keys(layer), cache.Values(layer), inputs.KeyMask, causal: false, _scale);
        return _oProj.Forward(attended.Reshape(batch, seq, _heads * _headDim));
    }

    /// <summary>
    /// q (batch, seq, heads, head_dim) and k, v (batch, seq, kv_heads, head_dim) of x (batch, seq, hidden):
    /// projected, q and k normed per head (Qwen3) and rotated.
    /// </summary>
    private (Tensor Q, Tensor K, Tensor V) Project(Tensor x, TextAttentionInputs inputs)
    {
        long batch = x.Dim(0), seq = x.Dim(1);
        Tensor q = _qProj.Forward(x).Reshape(batch, seq, _heads, _headDim);
        Tensor k = _kProj.Forward(x).Reshape(batch, seq, _kvHeads, _headDim);
        Tensor v = _vProj.Forward(x).Reshape(batch, seq, _kvHeads, _headDim);
        if (_qNorm != null && _kNorm != null)
        {
            // Qwen3 normalises each head over head_dim before the rotation.
            q = Ops.RmsNorm(q, _qNorm, _eps);
            k = Ops.RmsNorm(k, _kNorm, _eps);
        }
        return (Ops.Rope(q, inputs.Positions, inputs.InvFreq), Ops.Rope(k, inputs.Positions, inputs.InvFreq), v);
    }

    public void Dispose()
    {
        foreach (Linear linear in Linears)
        {
            linear.Dispose();
        }
        _qNorm?.Dispose();
        _kNorm?.Dispose();
    }
}

/// <summary>LlamaMLP / Qwen3MLP: down_proj(silu(gate_proj(x)) · up_proj(x)), no biases.</summary>
internal sealed class TextMlp : IDisposable
{
    private readonly Linear _gateProj; // hidden → intermediate
    private readonly Linear _upProj; // hidden → intermediate
    private readonly Linear _downProj; // intermediate → hidden

    private TextMlp(Linear gateProj, Linear upProj, Linear downProj) =>
        (_gateProj, _upProj, _downProj) = (gateProj, upProj, downProj);

    /// <param name="w">Scoped to <c>layers.N.mlp</c>.</param>
    public static TextMlp Load(Weights w, TextConfig config)
    {
        long hidden = config.HiddenSize, intermediate = config.IntermediateSize;
        return new TextMlp(
            Linear.Load(w.Sub("gate_proj"), hidden, intermediate, hasBias: false),
            Linear.Load(w.Sub("up_proj"), hidden, intermediate, hasBias: false),
            Linear.Load(w.Sub("down_proj"), intermediate, hidden, hasBias: false));
    }

    /// <summary>gate, up, down: transformers' registration order.</summary>
    public IEnumerable<Linear> Linears => [_gateProj, _upProj, _downProj];

    public IEnumerable<Tensor> Parameters => Linears.SelectMany(l => l.Parameters);

    /// <summary>x (..., hidden) → (..., hidden).</summary>
    public Tensor Forward(Tensor x) =>
        _downProj.Forward(Ops.SwiGlu(_gateProj.Forward(x), _upProj.Forward(x)));

    public void Dispose()
    {
        foreach (Linear linear in Linears)
        {
            linear.Dispose();
        }
    }
}

/// <summary>One pre-norm decoder layer: x + attn(norm(x)), then h + mlp(norm(h)).</summary>
internal sealed class TextDecoderLayer : IDisposable
{
    private readonly Tensor _inputLayernorm; // (hidden)
    private readonly TextAttention _selfAttn;
    private readonly Tensor _postAttentionLayernorm; // (hidden)
    private readonly TextMlp _mlp;
    private readonly float _eps;

    private TextDecoderLayer(Tensor inputLayernorm, TextAttention selfAttn, Tensor postAttentionLayernorm, TextMlp mlp, float eps)
    {
        (_inputLayernorm, _selfAttn, _postAttentionLayernorm, _mlp) = (inputLayernorm, selfAttn, postAttentionLayernorm, mlp);
        _eps = eps;
    }

    /// <param name="w">Scoped to <c>layers.N</c>.</param>
    public static TextDecoderLayer Load(Weights w, TextConfig config) => new(
        w.Sub("input_layernorm").Get("weight", config.HiddenSize),
        TextAttention.Load(w.Sub("self_attn"), config),
        w.Sub("post_attention_layernorm").Get("weight", config.HiddenSize),
        TextMlp.Load(w.Sub("mlp"), config),
        (float)config.RmsNormEps);

    public IEnumerable<Tensor> Parameters =>
        _selfAttn.Parameters.Concat(_mlp.Parameters).Concat([_inputLayernorm, _postAttentionLayernorm]);

    public IEnumerable<Linear> Linears => _selfAttn.Linears.Concat(_mlp.Linears);

    /// <summary>x (batch, seq, hidden) → (batch, seq, hidden).</summary>
    public Tensor Forward(Tensor x, TextAttentionInputs inputs)
    {
        Tensor h = Ops.Residual(x, _selfAttn.Forward(Ops.RmsNorm(x, _inputLayernorm, _eps), inputs));
        return Ops.Residual(h, _mlp.Forward(Ops.RmsNorm(h, _postAttentionLayernorm, _eps)));
    }

    /// <summary>The cached path (see <see cref="TextAttention.Forward(Tensor, TextAttentionInputs, KvCache, int, int)"/>): x (batch, n, hidden) → (batch, n, hidden).</summary>
    public Tensor Forward(Tensor x, TextAttentionInputs inputs, KvCache cache, int layer, int start)
    {
        Tensor h = Ops.Residual(x, _selfAttn.Forward(Ops.RmsNorm(x, _inputLayernorm, _eps), inputs, cache, layer, start));
        return Ops.Residual(h, _mlp.Forward(Ops.RmsNorm(h, _postAttentionLayernorm, _eps)));
    }

    public void Dispose()
    {
        _selfAttn.Dispose();
        _mlp.Dispose();
        _inputLayernorm.Dispose();
        _postAttentionLayernorm.Dispose();
    }
}

/// <summary>
/// The text model of Idefics3 (<c>model.text_model</c>): LlamaModel (transformers v4.46.3) or
/// Qwen3Model (v4.51.3) — token embeddings, decoder layers, final RMSNorm — run whole (training and
/// comparisons) or, for generation, with a <see cref="KvCache"/>. The LM head is not part of it
/// (lm_head.weight, or <see cref="EmbedTokens"/> when tied).
/// </summary>
public sealed class TextDecoder : IDisposable
{
    private readonly Tensor _embedTokens; // (vocab, hidden)
    private readonly TextDecoderLayer[] _layers;
    private readonly Tensor _norm; // (hidden)
    private readonly Tensor _invFreq; // (head_dim / 2), RoPE frequencies; a buffer, not a parameter

    private TextDecoder(TextConfig config, Tensor embedTokens, TextDecoderLayer[] layers, Tensor norm, Tensor invFreq)
    {
        Config = config;
        (_embedTokens, _layers, _norm, _invFreq) = (embedTokens, layers, norm, invFreq);
    }

    public TextConfig Config { get; }

    /// <summary>(vocab, hidden): embed_tokens.weight, which a tied LM head shares.</summary>
    public Tensor EmbedTokens => _embedTokens;

    /// <summary>
    /// Runs each layer under <see cref="Checkpoint.Run"/> while a tape records: its activations are
    /// recomputed during backward instead of being kept.
    /// </summary>
    public bool GradientCheckpointing { get; set; }

    /// <param name="w">Scoped to <c>model.text_model</c>.</param>
    public static TextDecoder Load(Weights w, TextConfig config)
    {
        Tensor embedTokens = w.Sub("embed_tokens").Get("weight", config.VocabSize, config.HiddenSize);
        Weights layers = w.Sub("layers");
        TextDecoderLayer[] decoderLayers = Enumerable.Range(0, config.NumHiddenLayers)
            .Select(i => TextDecoderLayer.Load(layers.Sub(i.ToString()), config)).ToArray();
        Tensor norm = w.Sub("norm").Get("weight", config.HiddenSize);
        Tensor invFreq = Tensor.FromArray(w.Context, Ops.RopeInverseFrequencies(config.HeadDim, config.RopeTheta), config.HeadDim / 2);
        return new TextDecoder(config, embedTokens, decoderLayers, norm, invFreq);
    }

    /// <summary>Every parameter once, embed_tokens first.</summary>
    public IEnumerable<Tensor> Parameters =>
        new[] { _embedTokens }.Concat(_layers.SelectMany(l => l.Parameters)).Append(_norm);

    /// <summary>Every Linear module, layer by layer, in transformers' registration order.</summary>
    public IEnumerable<Linear> Linears => _layers.SelectMany(l => l.Linears);

    /// <summary>Token embeddings: ids int32 (batch, seq) → (batch, seq, hidden).</summary>
    public Tensor Embed(Tensor ids) => Ops.Embedding(_embedTokens, ids);

    /// <summary>
    /// The decoder on <paramref name="inputsEmbeds"/> (batch, seq, hidden) → final-normed hidden
    /// states (batch, seq, hidden), in the current scope. Positions are 0..seq−1 in every row, also
    /// in left-padded ones, as Idefics3 runs its text model (no position_ids). Padding masks keys;
    /// a token before its row's first real one sees no key and, as in transformers, attends evenly
    /// to the whole row (<see cref="BlindQueries"/>).
    /// Traces text.hidden_states.0 (the input), .N (output of layer N−1, N &lt; L) and .L (after the
    /// final norm), transformers' output_hidden_states.
    /// </summary>
    /// <param name="attentionMask">uint8 (batch, seq), 1 = real token; null = every token real.</param>
    public Tensor Forward(Tensor inputsEmbeds, Tensor? attentionMask, Trace? trace = null)
    {
        if (inputsEmbeds.Rank != 3 || inputsEmbeds.Dim(2) != Config.HiddenSize)
        {
            throw new ArgumentException($"text decoder: inputs_embeds must be [batch, seq, {Config.HiddenSize}], got {inputsEmbeds}");
        }
        long batch = inputsEmbeds.Dim(0), seq = inputsEmbeds.Dim(1);
        if (attentionMask != null && (attentionMask.DType != DType.U8 || !attentionMask.Shape.SequenceEqual([batch, seq])))
        {
            throw new ArgumentException($"text decoder: attention_mask must be U8 [{batch}, {seq}], got {attentionMask}");
        }

        // The current scope keeps what is uploaded here alive for every backward that reads it
        // (rope's, a checkpoint's rerun); without a scope nothing is recorded, so it goes with this call.
        TensorScope? scope = TensorScope.Current;
        var unowned = new List<Tensor>();
        Tensor Upload(Tensor t)
        {
            if (scope != null)
            {
                scope.Own(t);
            }
            else
            {
                unowned.Add(t);
            }
            return t;
        }

        try
        {
            var inputs = new TextAttentionInputs(Upload(Positions(inputsEmbeds.Context, batch, seq)), _invFreq, attentionMask,
                attentionMask == null ? null : FindBlindQueries(attentionMask, batch, seq, Upload));
            trace?.Invoke("text.hidden_states.0", inputsEmbeds);
            Tensor h = inputsEmbeds;
            for (int i = 0; i < _layers.Length; i++)
            {
                TextDecoderLayer layer = _layers[i];
                // Forward only: a checkpointed layer's rerun happens in backward, outside this range.
                // The layer's own scope frees its intermediates when its forward ends, and its input goes
                // once the layer is past it (the caller's embeddings excepted); the tape keeps what backward reads.
                Tensor layerInput = h;
                using (inputsEmbeds.Context.Range($"text.layers.{i}"))
                using (var layerScope = new TensorScope())
                {
                    h = layerScope.Keep(GradientCheckpointing ? Checkpoint.Run(x => layer.Forward(x, inputs), h) : layer.Forward(h, inputs));
                }
                if (layerInput != inputsEmbeds)
                {
                    layerInput.Dispose();
                }
                if (i < _layers.Length - 1)
                {
                    trace?.Invoke($"text.hidden_states.{i + 1}", h);
                }
            }
            Tensor lastLayerOutput = h;
            h = Ops.RmsNorm(h, _norm, (float)Config.RmsNormEps);
            if (lastLayerOutput != inputsEmbeds)
            {
                lastLayerOutput.Dispose();
            }
            trace?.Invoke($"text.hidden_states.{_layers.Length}", h);
            return h;
        }
        finally
        {
            unowned.ForEach(t => t.Dispose());
        }
    }

    /// <summary>An empty cache for <paramref name="batch"/> rows of at most <paramref name="capacity"/> tokens, on this decoder's context; the caller disposes it.</summary>
    public KvCache NewCache(int batch, int capacity) => new(_embedTokens.Context, Config, batch, capacity);

    /// <summary>
    /// The decoder with a KV cache, as transformers' generate runs it: the first call (the prefill) takes
    /// the whole prompt, each later one a single new token per row; the keys and values of what is fed
    /// are cached. inputsEmbeds (batch, n, hidden) → final-normed hidden states (batch, n, hidden), in
    /// the current scope. Positions continue each row's real tokens (<see cref="KvCache.Append"/>).
    /// </summary>
    /// <param name="attentionMask">(batch · n), 1 = real token: the prompt's padding mask, and ones for a generated token.</param>
    public Tensor Forward(Tensor inputsEmbeds, byte[] attentionMask, KvCache cache)
    {
        if (inputsEmbeds.Rank != 3 || inputsEmbeds.Dim(0) != cache.Batch || inputsEmbeds.Dim(2) != Config.HiddenSize)
        {
            throw new ArgumentException($"text decoder: inputs_embeds must be [{cache.Batch}, n, {Config.HiddenSize}] for this cache, got {inputsEmbeds}");
        }
        int batch = cache.Batch, n = (int)inputsEmbeds.Dim(1), start = cache.Length;
        if (start > 0 && n != 1)
        {
            throw new ArgumentException($"text decoder: after the prefill a cached step takes one token per row, got {n}");
        }
        TensorScope scope = TensorScope.Current
            ?? throw new InvalidOperationException("the cached TextDecoder.Forward runs inside a TensorScope that owns its tensors");
        Context ctx = inputsEmbeds.Context;
        int[] positions = cache.Append(attentionMask, n);
        Tensor keyMask = start == 0
            ? Tensor.FromArray(ctx, attentionMask, batch, n)
            : Tensor.FromArray(ctx, cache.Mask, batch, cache.Capacity);
        var inputs = new TextAttentionInputs(scope.Own(Tensor.FromArray(ctx, positions, batch, n)), _invFreq, scope.Own(keyMask), Blind: null);
        Tensor h = inputsEmbeds;
        for (int i = 0; i < _layers.Length; i++)
        {
            using (ctx.Range($"text.layers.{i}"))
            {
                h = _layers[i].Forward(h, inputs, cache, i, start);
            }
        }
        return Ops.RmsNorm(h, _norm, (float)Config.RmsNormEps);
    }

    /// <summary>int32 (batch, seq): 0..seq−1 in every row.</summary>
    private static Tensor Positions(Context context, long batch, long seq)
    {
        var positions = new int[batch * seq];
        for (long i = 0; i < positions.Length; i++)
        {
            positions[i] = (int)(i % seq);
        }
        return Tensor.FromArray(context, positions, batch, seq);
    }

    /// <summary>The tokens before each row's first real one (reads the mask on the host); null when there are none.</summary>
    private BlindQueries? FindBlindQueries(Tensor attentionMask, long batch, long seq, Func<Tensor, Tensor> upload)
    {
        byte[] mask = attentionMask.ToByteArray();
        var rows = new List<int>();
        var batches = new List<int>();
        for (int b = 0; b < batch; b++)
        {
            for (int t = 0; t < seq && mask[b * seq + t] == 0; t++)
            {
                rows.Add((int)(b * seq + t));
                batches.Add(b);
            }
        }
        if (rows.Count == 0)
        {
            return null;
        }
        Context context = attentionMask.Context;
        return new BlindQueries(
            upload(Tensor.FromArray(context, rows.ToArray(), rows.Count)),
            upload(Tensor.FromArray(context, batches.ToArray(), batches.Count)),
            upload(Tensor.Zeros(context, DType.F32, batch, 1, Config.NumAttentionHeads, Config.HeadDim)));
    }

    public void Dispose()
    {
        _embedTokens.Dispose();
        foreach (TextDecoderLayer layer in _layers)
        {
            layer.Dispose();
        }
        _norm.Dispose();
        _invFreq.Dispose();
    }
}
