using NativeVlm.Adapters;
using NativeVlm.Autograd;
using NativeVlm.Batches;
using NativeVlm.Models;
using NativeVlm.Tensors;

namespace NativeVlm.Training.Dpo;

/// <summary>The reference model's summed completion log-probs of a batch's pairs (computed now, or precomputed and cached).</summary>
public sealed record DpoReferenceLogProbs(double[] Chosen, double[] Rejected);

/// <summary>
/// What one micro-batch's <see cref="DpoObjective.Step"/> computed. Log-probs are per pair and summed
/// over the completion tokens (<see cref="PolicyChosenLogProbs"/>, …); <see cref="LossResult"/> holds what
/// the loss saw (length-averaged for ipo) and the per-pair losses and rewards. <see cref="Metrics"/> uses
/// TRL's names: loss, rewards/chosen, rewards/rejected, rewards/accuracies, rewards/margins, logps/chosen,
/// logps/rejected, logits/chosen, logits/rejected, nll_loss (always computed; TRL logs it with rpo_alpha), plus
/// num_tokens (non-padding input tokens) and tokens/chosen, tokens/rejected (completion tokens).
/// <see cref="CompletionTokens"/>: per model row [chosen; rejected], the completion tokens scored.
/// </summary>
public sealed record DpoStepResult(
    int Pairs,
    double Loss,
    DpoLossResult LossResult,
    double[] PolicyChosenLogProbs,
    double[] PolicyRejectedLogProbs,
    DpoReferenceLogProbs Reference,
    double NllLoss,
    double MeanChosenLogit,
    double MeanRejectedLogit,
    int InputTokens,
    int ChosenTokens,
    int RejectedTokens,
    int[] CompletionTokens,
    IReadOnlyDictionary<string, double> Metrics);

/// <summary>
/// One DPO micro-batch, forward and backward, with TRL's semantics (concatenated_forward + dpo_loss):
/// the policy is the model with its adapters on, under a <see cref="Tape"/>; the reference is the same
/// model with the adapters off (<see cref="LoraAdapterSet.Disable"/>) under <see cref="Tape.NoGrad"/>, or
/// log-probs given by the caller (precomputed). A sequence's log-prob is the sum of its completion tokens'
/// log-probs from the chunked LM-head op (never [tokens × vocab] logits); ipo uses them length-averaged.
/// Each pair's images are encoded once per model pass and shared by its chosen and rejected rows (TRL
/// encodes them for every row); the shared features' gradient is the sum of both rows', so the vision
/// tower's adapters get the same gradient as with one encoding per row.
/// </summary>
public sealed class DpoObjective
{
    private readonly Idefics3Model _model;
    private readonly LoraAdapterSet? _adapters;

    /// <param name="model">The model; its trainable tensors (RequiresGrad) receive the gradients.</param>
    /// <param name="adapters">The adapters switched off for the reference; null when every step is given reference log-probs.</param>
    /// <param name="loss">The loss, with its settings and bco_pair's running state.</param>
    public DpoObjective(Idefics3Model model, LoraAdapterSet? adapters, DpoLoss loss)
    {
        _model = model;
        _adapters = adapters;
        Loss = loss;
    }

    public DpoLoss Loss { get; }

    /// <summary>
    /// True (the default): each pair's images are encoded once per pass and shared by its two rows. False:
    /// every row encodes its own copy, as TRL does (same numbers to rounding; for checking and comparison).
    /// </summary>
    public bool EncodeImagesOncePerPair { get; set; } = true;

    /// <summary>
    /// Forward and backward of one micro-batch: adds <paramref name="lossScale"/> · d loss / d θ into the
    /// .Grad of every parameter that requires grad (gradients accumulate across calls, as the tape always adds;
    /// pass 1 / gradient_accumulation_steps to average micro-batches). <paramref name="reference"/>: the
    /// reference log-probs when precomputed; null runs the reference model.
    /// </summary>
    public DpoStepResult Step(DpoBatch batch, double lossScale, DpoReferenceLogProbs? reference = null)
    {
        Idefics3Inputs inputs = batch.ModelInputs;
        int pairs = batch.Batch, rows = 2 * pairs, seq = inputs.SeqLen;
        if (inputs.Batch != rows)
        {
            throw new ArgumentException($"a DPO batch of {pairs} pairs has {rows} model rows, not {inputs.Batch}");
        }
        int[] targets = Targets(inputs);
        int[] completion = Enumerable.Range(0, rows).Select(r => targets.AsSpan(r * seq, seq).ToArray().Count(t => t != Ops.IgnoreIndex)).ToArray();
        bool averaged = Loss.Options.AveragesLogProbs;
        if (averaged && completion.Any(c => c == 0))
        {
            throw new ArgumentException($"row {Array.IndexOf(completion, 0)} has no completion token: ipo's length-averaged log-prob is undefined");
        }
        if (reference != null && (reference.Chosen.Length != pairs || reference.Rejected.Length != pairs))
        {
            throw new ArgumentException($"precomputed reference log-probs for {reference.Chosen.Length}/{reference.Rejected.Length} pairs, the batch has {pairs}");
        }
        reference ??= ReferenceLogProbs(batch);

        Context ctx = _model.LmHead.Context;
        using var tape = new Tape();
        Tensor logProbs;
        double meanChosenLogit, meanRejectedLogit;
        using (ctx.Range("dpo.policy"))
        {
            Tensor hidden = ForwardShared(inputs, pairs);
            Tensor targetTensor = tape.Own(Tensor.FromArray(ctx, targets, rows, seq));
            using (ctx.Range("lm_head.log_probs"))
            {
                logProbs = Ops.LmLogProb(hidden, _model.LmHead, targetTensor);      // (rows, seq), 0 where ignored
            }
            (meanChosenLogit, meanRejectedLogit) = MeanCompletionLogits(hidden, targets, pairs);
        }
        float[] tokenLogProbs = logProbs.ToFloatArray();
        double[] sums = RowSums(tokenLogProbs, rows, seq);
        int chosenTokens = completion.Take(pairs).Sum(), rejectedTokens = completion.Skip(pairs).Sum();
        double nll = chosenTokens == 0 ? double.NaN : -sums.Take(pairs).Sum() / chosenTokens;

        double[] Fed(double[] values, int offset) =>
            Enumerable.Range(0, pairs).Select(i => averaged ? values[i] / completion[offset + i] : values[i]).ToArray();
        double[] policyChosen = sums[..pairs], policyRejected = sums[pairs..];
        DpoLossResult result = Loss.Compute(Fed(policyChosen, 0), Fed(policyRejected, pairs),
            Fed(reference.Chosen, 0), Fed(reference.Rejected, pairs), nll);

        // The loss is composed on the host: backward starts at the per-token log-probs, seeded with
        // lossScale · d loss / d log-prob (a row's d loss / d Σ, over its length for ipo, plus the NLL's share).
        var seed = new float[rows * seq];
        for (int r = 0; r < rows; r++)
        {
            double perRow = r < pairs ? result.GradPolicyChosen[r] : result.GradPolicyRejected[r - pairs];
            if (averaged)
            {
                perRow /= completion[r];
            }
            if (r < pairs && result.GradNll != 0)
            {
                perRow -= result.GradNll / chosenTokens;
            }
            float value = (float)(lossScale * perRow);
            for (int t = 0; t < seq; t++)
            {
                seed[r * seq + t] = targets[r * seq + t] == Ops.IgnoreIndex ? 0f : value;
            }
        }
        if (logProbs.RequiresGrad)
        {
            tape.Backward(logProbs, tape.Own(Tensor.FromArray(ctx, seed, rows, seq)));
        }
        else if (lossScale != 0)
        {
            throw new InvalidOperationException("no trainable parameter leads to the policy's log-probs: nothing requires grad");
        }

        int inputTokens = inputs.AttentionMask.Count(m => m != 0);
        var metrics = new Dictionary<string, double>
        {
            ["loss"] = result.Loss,
            ["rewards/chosen"] = result.ChosenRewards.Average(),
            ["rewards/rejected"] = result.RejectedRewards.Average(),
            ["rewards/accuracies"] = result.Accuracy,
            ["rewards/margins"] = result.Margin,
            ["logps/chosen"] = Fed(policyChosen, 0).Average(),
            ["logps/rejected"] = Fed(policyRejected, pairs).Average(),
            ["logits/chosen"] = meanChosenLogit,
            ["logits/rejected"] = meanRejectedLogit,
            ["nll_loss"] = nll,
            ["num_tokens"] = inputTokens,
            ["tokens/chosen"] = chosenTokens,
            ["tokens/rejected"] = rejectedTokens,
        };
        return new DpoStepResult(pairs, result.Loss, result, policyChosen, policyRejected, reference, nll,
            meanChosenLogit, meanRejectedLogit, inputTokens, chosenTokens, rejectedTokens, completion, metrics);
    }

    /// <summary>
    /// The reference model's summed completion log-probs: the adapters off, no gradient (what
    /// --precompute-ref-log-probs caches).
    /// </summary>
    public DpoReferenceLogProbs ReferenceLogProbs(DpoBatch batch)
    {
        if (_adapters == null)
        {
            throw new InvalidOperationException("without adapters there is no reference model to run: pass precomputed reference log-probs");
        }
        using (_model.LmHead.Context.Range("dpo.reference"))
        using (_adapters.Disable())
        {
            return SequenceLogProbs(batch);
        }
    }

    /// <summary>The model's summed completion log-probs as it is now (adapters as they are), no gradient.</summary>
    public DpoReferenceLogProbs SequenceLogProbs(DpoBatch batch)
    {
        Idefics3Inputs inputs = batch.ModelInputs;
        int pairs = batch.Batch, rows = 2 * pairs, seq = inputs.SeqLen;
        Context ctx = _model.LmHead.Context;
        using var scope = new TensorScope();
        using (Tape.NoGrad())
        {
            Tensor hidden = ForwardShared(inputs, pairs);
            Tensor targets = scope.Own(Tensor.FromArray(ctx, Targets(inputs), rows, seq));
            Tensor logProbs;
            using (ctx.Range("lm_head.log_probs"))
            {
                logProbs = Ops.LmLogProb(hidden, _model.LmHead, targets);
            }
            double[] sums = RowSums(logProbs.ToFloatArray(), rows, seq);
            return new DpoReferenceLogProbs(sums[..pairs], sums[pairs..]);
        }
    }

    /// <summary>The model's hidden states for the [chosen; rejected] rows, each pair's images encoded once (or per row).</summary>
    private Tensor ForwardShared(Idefics3Inputs inputs, int pairs)
    {
        if (inputs.PixelValues == null || !EncodeImagesOncePerPair)
        {
            return _model.Forward(inputs);
        }
        int[] shape = inputs.PixelShape!;
        int slots = shape[1], plane = shape[3] * shape[4];
        Idefics3Inputs pairImages = inputs with
        {
            PixelValues = inputs.PixelValues[..(pairs * slots * shape[2] * plane)],
            PixelShape = [pairs, .. shape[1..]],
            PixelAttentionMask = inputs.PixelAttentionMask![..(pairs * slots * plane)],
        };
        Tensor features = _model.ImageFeatures(pairImages);                     // (pair frames · image_seq_len, hidden)
        return _model.Forward(inputs, features, FeatureRows(inputs, pairs, features.Dim(0)));
    }

    /// <summary>
    /// For every image token of the [chosen; rejected] rows, its row of the pairs' features: chosen row i
    /// and rejected row i both take pair i's block, in order.
    /// </summary>
    private int[] FeatureRows(Idefics3Inputs inputs, int pairs, long featureCount)
    {
        int seq = inputs.SeqLen, imageToken = _model.Config.ImageTokenId;
        int[] counts = Enumerable.Range(0, 2 * pairs)
            .Select(r => inputs.InputIds.AsSpan(r * seq, seq).ToArray().Count(id => id == imageToken)).ToArray();
        var offsets = new int[pairs];
        for (int i = 1; i < pairs; i++)
        {
            offsets[i] = offsets[i - 1] + counts[i - 1];
        }
        if (offsets[^1] + counts[pairs - 1] != featureCount)
        {
            throw new ArgumentException($"the chosen rows hold {offsets[^1] + counts[pairs - 1]} image tokens but the pairs' images give {featureCount} features");
        }
        var rows = new List<int>();
        for (int r = 0; r < 2 * pairs; r++)
        {
            int pair = r % pairs;
            if (counts[r] != counts[pair])
            {
                throw new ArgumentException($"pair {pair}: the chosen row has {counts[pair]} image tokens, the rejected row {counts[r]}");
            }
            rows.AddRange(Enumerable.Range(offsets[pair], counts[r]));
        }
        return rows.ToArray();
    }

    /// <summary>
    /// TRL's logits/chosen and logits/rejected: the mean logit over the vocabulary and the positions that
    /// predict completion tokens, chosen and rejected rows apart. The mean over the vocabulary of h·wᵥ is
    /// h·w̄ with w̄ the mean LM-head row, so this needs one [hidden] vector and one dot product per token,
    /// never [tokens × vocab] logits. No gradient.
    /// </summary>
    private (double Chosen, double Rejected) MeanCompletionLogits(Tensor hidden, int[] targets, int pairs)
    {
        Context ctx = _model.LmHead.Context;
        TensorScope scope = TensorScope.Current!;
        long vocab = _model.LmHead.Dim(0);
        using (Tape.NoGrad())
        {
            var uniform = new float[vocab];
            Array.Fill(uniform, 1f / vocab);
            Tensor weights = scope.Own(Tensor.FromArray(ctx, uniform, 1, vocab));
            Tensor meanRow = Ops.Matmul(weights, _model.LmHead);                 // (1, hidden)
            float[] perToken = Ops.Linear(hidden, meanRow).ToFloatArray();        // (rows, seq, 1)
            int half = targets.Length / 2;
            return (MaskedMean(perToken, targets, 0, half), MaskedMean(perToken, targets, half, targets.Length));
        }
    }

    private static double MaskedMean(float[] values, int[] targets, int from, int to)
    {
        double sum = 0;
        int count = 0;
        for (int i = from; i < to; i++)
        {
            if (targets[i] != Ops.IgnoreIndex)
            {
                sum += values[i];
                count++;
            }
        }
        return count == 0 ? double.NaN : sum / count;
    }

    /// <summary>targets[r, t] = labels[r, t + 1] (the completion token t predicts), −100 elsewhere and at the last position.</summary>
    private static int[] Targets(Idefics3Inputs inputs)
    {
        int[] labels = inputs.Labels ?? throw new ArgumentException("the DPO model rows have no labels");
        int rows = inputs.Batch, seq = inputs.SeqLen;
        var targets = new int[rows * seq];
        for (int r = 0; r < rows; r++)
        {
            for (int t = 0; t < seq; t++)
            {
                targets[r * seq + t] = t + 1 < seq ? labels[r * seq + t + 1] : Ops.IgnoreIndex;
            }
        }
        return targets;
    }

    private static double[] RowSums(float[] values, int rows, int seq)
    {
        var sums = new double[rows];
        for (int r = 0; r < rows; r++)
        {
            double sum = 0;
            for (int t = 0; t < seq; t++)
            {
                sum += values[r * seq + t];
            }
            sums[r] = sum;
        }
        return sums;
    }
}
