using NativeVlm.Interop;
using NativeVlm.Tensors;

namespace NativeVlm;

public static partial class Ops
{
    /// <summary>Targets equal to this are ignored (log-prob 0, no gradient), as in transformers.</summary>
    public const int IgnoreIndex = -100;

    /// <summary>Vocab columns per chunk of the LM head: bounds the logits scratch to [tokens, 4096].</summary>
    public const int DefaultVocabChunk = 4096;

    /// <summary>
    /// Log-probabilities of given targets under the LM head, never holding [tokens, vocab]
    /// (nvlm_lm_logprob_forward): h [..., d], w [vocab, d], targets int32 with h's leading shape.
    /// Returns log_softmax(h · wᵀ)[target] per token, 0 where the target is <see cref="IgnoreIndex"/>.
    /// </summary>
    public static Tensor LmLogProb(Tensor h, Tensor w, Tensor targets, int chunk = DefaultVocabChunk)
    {
        const string op = "lm_logprob";
        RequireDType(op, "h", h, DType.F32);
        RequireDType(op, "w", w, DType.F32);
        RequireDType(op, "targets", targets, DType.I32);
        RequireRank(op, "h", h, 1);
        RequireSameContext(op, h, w, targets);
        long n = Rows(h), d = h.Dim(-1);
        if (w.Rank != 2 || w.Dim(1) != d)
        {
            throw new ArgumentException($"{op}: w must be [vocab, {d}], got {w}");
        }
        long[] tokenShape = h.Shape[..^1].ToArray();
        RequireShape(op, "targets", targets, tokenShape);
        if (chunk <= 0)
        {
            throw new ArgumentOutOfRangeException(nameof(chunk), chunk, $"{op}: chunk must be positive");
        }
        long vocab = w.Dim(0);

        Tensor logp = Tensor.Empty(h.Context, DType.F32, tokenShape);
        Tensor lse = Tensor.Empty(h.Context, DType.F32, n); // (n) saved for backward
        Native.Check(NativeMethods.nvlm_lm_logprob_forward(h.Context.Handle, logp.Buffer, lse.Buffer, h.Buffer,
            w.Buffer, targets.Buffer, n, d, vocab, chunk));

        if (ShouldRecord(h, w))
        {
            Record(op, logp, dLogp => Native.Check(NativeMethods.nvlm_lm_logprob_backward(h.Context.Handle,
                GradBuffer(h), GradBuffer(w), dLogp.Buffer, h.Buffer, w.Buffer, targets.Buffer, lse.Buffer, n, d,
                vocab, chunk)), saved: [w, targets, lse], activations: [h]);
        }
        else
        {
            lse.Dispose();
        }
        return logp;
    }

    /// <summary>
    /// Mean softmax cross-entropy over the tokens whose target is not ignored, as transformers'
    /// causal-LM loss: −Σ logp / count. <paramref name="targets"/> is read on the host to count.
    /// </summary>
    public static Tensor CrossEntropy(Tensor h, Tensor w, Tensor targets, int chunk = DefaultVocabChunk)
    {
        int kept = targets.ToInt32Array().Count(t => t != IgnoreIndex);
        if (kept == 0)
        {
            throw new ArgumentException("cross_entropy: every target is ignored (-100); the mean is undefined");
        }
        return Scale(Sum(LmLogProb(h, w, targets, chunk)), -1f / kept);
    }
}
