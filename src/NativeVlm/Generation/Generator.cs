using System.Diagnostics;
using NativeVlm.Autograd;
using NativeVlm.Models;
using NativeVlm.Tensors;
using NativeVlm.Training;

namespace NativeVlm.Generation;

/// <summary>Why a row stopped: it produced an eos token, or it reached max_new_tokens.</summary>
public enum StopReason
{
    Eos,
    MaxNewTokens,
}

/// <summary>One row's new tokens (its eos included, the pad tokens after it not) and why it stopped.</summary>
public sealed record GeneratedRow(int[] TokenIds, StopReason StopReason);

/// <summary>
/// What one generate call gave: per row, the new tokens; the tokens of every step for every row
/// (<see cref="Steps"/>[s][b], pad where row b had finished: the columns of transformers' sequences
/// after the prompt); the raw step logits [step][b · vocab] when they were asked for; and the time of
/// the prefill (vision, connector, prompt, first token) and of the decode steps after it.
/// </summary>
public sealed record GenerationResult(
    IReadOnlyList<GeneratedRow> Rows,
    IReadOnlyList<int[]> Steps,
    IReadOnlyList<float[]>? StepLogits,
    TimeSpan PrefillTime,
    TimeSpan DecodeTime)
{
    /// <summary>Tokens per second of the decode steps (every token after the first); null when there were none.</summary>
    public double? DecodeTokensPerSecond =>
        Steps.Count > 1 && DecodeTime > TimeSpan.Zero ? (Steps.Count - 1) / DecodeTime.TotalSeconds : null;
}

/// <summary>
/// transformers' GenerationMixin.generate for greedy search and sampling (num_beams 1) with a KV cache:
/// one prefill over the prompt (images encoded once), then one decoder step per new token. Each step
/// chooses a token per unfinished row (<see cref="LogitsWarpers"/>); finished rows get the pad token;
/// a row finishes on an eos token (only the newest token counts, so eos ids in the prompt stop nothing);
/// the call ends when every row has finished or after max_new_tokens steps. Nothing is recorded for
/// gradients, and each step's tensors are freed before the next, so memory is the cache plus one step.
/// </summary>
public static class Generator
{
    /// <param name="onStep">Called after each step with the tokens chosen for every row (pad for finished rows).</param>
    /// <param name="keepStepLogits">Keep every step's raw logits in the result (transformers' output_logits).</param>
    public static GenerationResult Generate(Idefics3Model model, Idefics3Inputs prompt, GenerationSettings settings,
        Action<int[]>? onStep = null, bool keepStepLogits = false)
    {
        settings.Validate();
        int batch = prompt.Batch, vocab = model.Config.Text.VocabSize;
        Random? random = settings.DoSample ? new Xoshiro256(settings.Seed) : null;
        var eos = new HashSet<int>(settings.EosTokenIds);
        var tokens = Enumerable.Range(0, batch).Select(_ => new List<int>()).ToArray();
        var stopReasons = new StopReason[batch];
        Array.Fill(stopReasons, StopReason.MaxNewTokens);
        var unfinished = Enumerable.Repeat(true, batch).ToArray();
        var steps = new List<int[]>();
        List<float[]>? stepLogits = keepStepLogits ? [] : null;

        using IDisposable noGrad = Tape.NoGrad();
        using KvCache cache = model.Text.NewCache(batch, prompt.SeqLen + settings.MaxNewTokens);
        var clock = Stopwatch.StartNew();
        float[] logits = StepLogits(() => model.Prefill(prompt, cache));
        TimeSpan prefillTime = clock.Elapsed;
        while (true)
        {
            stepLogits?.Add(logits);
            var next = new int[batch];
            for (int b = 0; b < batch; b++)
            {
                next[b] = unfinished[b] ? Choose(logits.AsSpan(b * vocab, vocab), settings, random) : settings.PadTokenId;
                if (unfinished[b])
                {
                    tokens[b].Add(next[b]);
                    if (eos.Contains(next[b]))
                    {
                        unfinished[b] = false;
                        stopReasons[b] = StopReason.Eos;
                    }
                }
            }
            steps.Add(next);
            onStep?.Invoke(next);
            if (steps.Count == settings.MaxNewTokens || !unfinished.Contains(true))
            {
                break;
            }
            logits = StepLogits(() => model.DecodeStep(next, cache));
        }
        TimeSpan decodeTime = clock.Elapsed - prefillTime;
        GeneratedRow[] rows = Enumerable.Range(0, batch).Select(b => new GeneratedRow([.. tokens[b]], stopReasons[b])).ToArray();
        return new GenerationResult(rows, steps, stepLogits, prefillTime, decodeTime);
    }

    /// <summary>Runs one forward in its own scope and brings its logits to the host; the step's tensors go with the scope.</summary>
    private static float[] StepLogits(Func<Tensor> forward)
    {
        using var scope = new TensorScope();
        return forward().ToFloatArray();
    }

    private static int Choose(Span<float> logits, GenerationSettings settings, Random? random)
    {
        if (random is null)
        {
            return LogitsWarpers.Argmax(logits);
        }
        float[] warped = logits.ToArray();
        LogitsWarpers.Warp(warped, settings.Temperature, settings.TopK, settings.TopP);
        return LogitsWarpers.Sample(warped, random);
    }
}
