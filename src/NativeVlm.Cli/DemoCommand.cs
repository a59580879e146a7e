using System.Diagnostics;
using CommandLine;
using NativeVlm.Autograd;
using NativeVlm.Tensors;
using NativeVlm.Training;

namespace NativeVlm.Cli;

[Verb("demo", HelpText = "Train a tiny decoder block on a synthetic task on the CPU: a smoke run of the whole graph.")]
public sealed class DemoOptions
{
    [Option("device", Default = "cpu", HelpText = "cpu, cuda or cuda:N.")]
    public string Device { get; set; } = "cpu";

    [Option("steps", Default = 150, HelpText = "Optimizer steps.")]
    public int Steps { get; set; }

    [Option("seed", Default = 0, HelpText = "Seed of the weights and of the data.")]
    public int Seed { get; set; }
}

/// <summary>
/// Until the training issue lands, the demo is a smoke run of the graph: one pre-norm decoder
/// block (embedding → RMSNorm → causal GQA attention with RoPE → residual → RMSNorm → SwiGLU MLP
/// → residual → RMSNorm → chunked LM-head cross-entropy) learns to continue sequences that
/// count upwards modulo the vocabulary, trained with AdamW. The loss must fall from ln(vocab).
/// </summary>
public static class DemoCommand
{
    private const int Vocab = 32, Hidden = 32, Heads = 4, KvHeads = 2, HeadDim = Hidden / Heads, Ffn = 64;
    private const int Batch = 8, SeqLen = 12;

    public static int Run(DemoOptions options)
    {
        if (options.Steps <= 0)
        {
            throw new ArgumentException($"--steps must be positive, got {options.Steps}");
        }
        using Context ctx = Context.Create(options.Device);
        var rng = new Random(options.Seed);
        var model = new TinyBlock(ctx, rng);
        using var optimizer = new AdamW(model.Parameters) { WeightDecay = 0f };

        Console.WriteLine($"demo: one decoder block, {model.Parameters.Sum(p => p.ElementCount):N0} parameters, " +
            $"vocab {Vocab}, batch {Batch}×{SeqLen}, {options.Steps} AdamW steps on {ctx}");
        Console.WriteLine($"chance level: ln {Vocab} = {Math.Log(Vocab):F4}");
        var clock = Stopwatch.StartNew();
        float loss = float.NaN;
        for (int step = 1; step <= options.Steps; step++)
        {
            (int[] ids, int[] targets) = CountingBatch(rng);
            using var tape = new Tape();
            Tensor lossTensor = model.Loss(ids, targets);
            tape.Backward(lossTensor);
            optimizer.Update(lr: 3e-3f);
            optimizer.ZeroGrad();
            loss = lossTensor.ToFloatArray()[0];
            if (step == 1 || step % 25 == 0 || step == options.Steps)
            {
                Console.WriteLine($"step {step,4}  loss {loss:F4}  {step * Batch / clock.Elapsed.TotalSeconds:F0} seq/s");
            }
        }
        model.Dispose();
        bool learned = loss < 0.5 * Math.Log(Vocab);
        Console.WriteLine(learned
            ? $"demo: loss {loss:F3} after {options.Steps} steps ({clock.Elapsed.TotalSeconds:F1} s): the graph learns"
            : $"demo: loss only reached {loss:F3} (chance {Math.Log(Vocab):F3}): the graph did not learn");
        return learned ? 0 : 1;
    }

    /// <summary>Rows start at a random token and count up mod vocab; the target is the next token.</summary>
    private static (int[] Ids, int[] Targets) CountingBatch(Random rng)
    {
        var ids = new int[Batch * SeqLen];
        var targets = new int[Batch * SeqLen];
        for (int b = 0; b < Batch; b++)
        {
            int start = rng.Next(Vocab);
            for (int t = 0; t < SeqLen; t++)
            {
                ids[b * SeqLen + t] = (start + t) % Vocab;
                targets[b * SeqLen + t] = (start + t + 1) % Vocab;
            }
        }
        return (ids, targets);
    }

    private sealed class TinyBlock : IDisposable
    {
        private readonly Context _ctx;
        private readonly Tensor _embed, _norm1, _wq, _wk, _wv, _wo, _norm2, _wGate, _wUp, _wDown, _normOut, _lmHead;
        private readonly Tensor _invFreq, _positions;

        public Tensor[] Parameters { get; }

        public TinyBlock(Context ctx, Random rng)
        {
            _ctx = ctx;
            _embed = Param(rng, Vocab, Hidden);
            _norm1 = Ones(Hidden);
            _wq = Param(rng, Heads * HeadDim, Hidden);
            _wk = Param(rng, KvHeads * HeadDim, Hidden);
            _wv = Param(rng, KvHeads * HeadDim, Hidden);
            _wo = Param(rng, Hidden, Heads * HeadDim);
            _norm2 = Ones(Hidden);
            _wGate = Param(rng, Ffn, Hidden);
            _wUp = Param(rng, Ffn, Hidden);
            _wDown = Param(rng, Hidden, Ffn);
            _normOut = Ones(Hidden);
            _lmHead = Param(rng, Vocab, Hidden);
            Parameters = [_embed, _norm1, _wq, _wk, _wv, _wo, _norm2, _wGate, _wUp, _wDown, _normOut, _lmHead];
            _invFreq = Tensor.FromArray(ctx, Ops.RopeInverseFrequencies(HeadDim, 10000.0), HeadDim / 2);
            _positions = Tensor.FromArray(ctx, Enumerable.Range(0, Batch * SeqLen).Select(i => i % SeqLen).ToArray(), Batch * SeqLen);
        }

        /// <summary>Mean next-token cross-entropy of one batch; tensors belong to the caller's tape.</summary>
        public Tensor Loss(int[] ids, int[] targets)
        {
            TensorScope scope = TensorScope.Current ?? throw new InvalidOperationException("Loss runs inside a tape");
            Tensor idsT = scope.Own(Tensor.FromArray(_ctx, ids, Batch, SeqLen));
            Tensor targetsT = scope.Own(Tensor.FromArray(_ctx, targets, Batch, SeqLen));

            Tensor x = Ops.Embedding(_embed, idsT);                                  // (B, T, C)
            Tensor h = Ops.RmsNorm(x, _norm1, 1e-5f);
            Tensor q = Ops.Rope(Ops.Linear(h, _wq).Reshape(Batch, SeqLen, Heads, HeadDim), _positions, _invFreq);
            Tensor k = Ops.Rope(Ops.Linear(h, _wk).Reshape(Batch, SeqLen, KvHeads, HeadDim), _positions, _invFreq);
            Tensor v = Ops.Linear(h, _wv).Reshape(Batch, SeqLen, KvHeads, HeadDim);
            Tensor attn = Ops.Attention(q, k, v, keyMask: null, causal: true, scale: 1f / MathF.Sqrt(HeadDim));
            x = Ops.Residual(x, Ops.Linear(attn.Reshape(Batch, SeqLen, Heads * HeadDim), _wo));
            h = Ops.RmsNorm(x, _norm2, 1e-5f);
            x = Ops.Residual(x, Ops.Linear(Ops.SwiGlu(Ops.Linear(h, _wGate), Ops.Linear(h, _wUp)), _wDown));
            return Ops.CrossEntropy(Ops.RmsNorm(x, _normOut, 1e-5f), _lmHead, targetsT, chunk: 8);
        }

        private Tensor Param(Random rng, int rows, int cols)
        {
            // N(0, 1/cols): unit-variance outputs at initialisation.
            var data = new float[rows * cols];
            for (int i = 0; i < data.Length; i++)
            {
                double u1 = 1.0 - rng.NextDouble(), u2 = rng.NextDouble();
                data[i] = (float)(Math.Sqrt(-2 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2) / Math.Sqrt(cols));
            }
            Tensor t = Tensor.FromArray(_ctx, data, rows, cols);
            t.RequiresGrad = true;
            return t;
        }

        private Tensor Ones(int n)
        {
            Tensor t = Tensor.FromArray(_ctx, Enumerable.Repeat(1f, n).ToArray(), n);
            t.RequiresGrad = true;
            return t;
        }

        public void Dispose()
        {
            foreach (Tensor t in Parameters)
            {
                t.Dispose();
            }
            _invFreq.Dispose();
            _positions.Dispose();
        }
    }
}
