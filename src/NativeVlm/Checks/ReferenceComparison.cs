using NativeVlm.Autograd;
using NativeVlm.IO;
using NativeVlm.Models;
using NativeVlm.Tensors;

namespace NativeVlm.Checks;

/// <summary>One expected tensor against what NativeVlm computed for it.</summary>
public sealed record TensorComparison(
    string Name,
    long ComparedElements,
    double MaxAbsError,
    double RelativeError,
    double AbsoluteTolerance,
    double RelativeTolerance,
    string? Problem)
{
    /// <summary>Max abs error within the absolute tolerance and ‖out − ref‖ / ‖ref‖ within the relative one.</summary>
    public bool Passed => Problem == null && MaxAbsError <= AbsoluteTolerance && RelativeError <= RelativeTolerance;
}

/// <summary>Tolerances of a comparison; losses get their own, tighter absolute one.</summary>
public sealed record ComparisonTolerances(double Absolute = 1e-4, double Relative = 1e-4, double LossAbsolute = 1e-5);

/// <summary>
/// Runs a model on the cases of an inputs file and compares every tensor of an expected file that
/// it knows how to produce — under the names the reference fixtures use: vision.embeddings,
/// vision.layer_output.N, vision.last_hidden_state, connector.image_hidden_states,
/// text.hidden_states.N, logits, next_token_logprobs, loss — each case under its prefix
/// ("partial.logits"). Text-side tensors are compared only where attention_mask is 1 and
/// next-token log-probs only where target_mask is 1: values at padded positions are
/// implementation details of transformers (a fully masked softmax row), not model outputs.
/// A file that holds several models' outputs names them under a further prefix (an adapter
/// fixture's "adapter.logits", "merged.loss"): the comparison then takes only that prefix's.
/// </summary>
public static class ReferenceComparison
{
    private sealed record Produced(float[] Values, long[] Shape);

    public sealed record Result(IReadOnlyList<TensorComparison> Compared, IReadOnlyList<string> NotProduced)
    {
        public bool Passed => Compared.Count > 0 && Compared.All(c => c.Passed);
    }

    /// <param name="outputPrefix">
    /// Compare only the expected tensors whose names start with this, read as the output named by
    /// the rest ("adapter." takes "adapter.logits" as logits); "" takes every tensor.
    /// </param>
    public static Result Run(Idefics3Model model, string inputsPath, string expectedPath, ComparisonTolerances tolerances,
        string outputPrefix = "")
    {
        using SafeTensorsReader inputsFile = SafeTensorsReader.Open(inputsPath);
        using SafeTensorsReader expected = SafeTensorsReader.Open(expectedPath);
        IReadOnlyList<string> prefixes = Idefics3Inputs.CasePrefixes(inputsFile);
        if (prefixes.Count == 0)
        {
            throw new SafeTensorsException(inputsPath, null, "no input_ids (nor PREFIX.input_ids) tensor: nothing to run");
        }

        List<string> outputNames = expected.Names.Where(n => n.StartsWith(outputPrefix, StringComparison.Ordinal))
            .Select(n => n[outputPrefix.Length..]).ToList();
        var compared = new List<TensorComparison>();
        var known = new HashSet<string>();
        foreach (string prefix in prefixes)
        {
            Idefics3Inputs inputs = Idefics3Inputs.Read(inputsFile, prefix);
            Dictionary<string, Produced> produced = RunCase(model, inputs, WantedNames(outputNames, prefix, prefixes));
            foreach ((string name, Produced output) in produced)
            {
                known.Add(prefix + name);
                compared.Add(Compare(outputPrefix + prefix + name, name, output, expected, inputs, tolerances));
            }
        }
        List<string> notProduced = outputNames.Where(n => !known.Contains(n)).Select(n => outputPrefix + n)
            .Order(StringComparer.Ordinal).ToList();
        return new Result(compared, notProduced);
    }

    /// <summary>
    /// The expected names of this case, prefix stripped; a name under a longer case prefix
    /// ("partial.logits" when this case is "") belongs to that case.
    /// </summary>
    private static HashSet<string> WantedNames(IEnumerable<string> outputNames, string prefix, IReadOnlyList<string> prefixes) =>
        outputNames
            .Where(n => n.StartsWith(prefix, StringComparison.Ordinal))
            .Where(n => !prefixes.Any(p => p.Length > prefix.Length && n.StartsWith(p, StringComparison.Ordinal)))
            .Select(n => n[prefix.Length..])
            .ToHashSet();

    private static Dictionary<string, Produced> RunCase(Idefics3Model model, Idefics3Inputs inputs, HashSet<string> wanted)
    {
        var produced = new Dictionary<string, Produced>();
        void Keep(string name, Tensor t)
        {
            if (wanted.Contains(name))
            {
                produced[name] = new Produced(t.ToFloatArray(), t.Shape.ToArray());
            }
        }

        using var scope = new TensorScope();
        using IDisposable noGrad = Tape.NoGrad();
        Tensor hidden = model.Forward(inputs, Keep);
        if (wanted.Contains("logits"))
        {
            Keep("logits", model.Logits(hidden));
        }
        if (wanted.Contains("next_token_logprobs"))
        {
            // [batch, seq] with the last column empty → [batch, seq − 1] as the fixtures store it.
            float[] all = model.NextTokenLogProbs(hidden, inputs).ToFloatArray();
            int batch = inputs.Batch, seq = inputs.SeqLen;
            float[] shifted = new float[batch * (seq - 1)];
            for (int b = 0; b < batch; b++)
            {
                Array.Copy(all, b * seq, shifted, b * (seq - 1), seq - 1);
            }
            produced["next_token_logprobs"] = new Produced(shifted, [batch, seq - 1]);
        }
        if (wanted.Contains("loss") && inputs.Labels != null)
        {
            Keep("loss", model.Loss(hidden, inputs));
        }
        return produced;
    }

    private static TensorComparison Compare(string fullName, string name, Produced output, SafeTensorsReader expected,
        Idefics3Inputs inputs, ComparisonTolerances tolerances)
    {
        bool isLoss = name == "loss";
        double atol = isLoss ? tolerances.LossAbsolute : tolerances.Absolute;
        long[] expectedShape = expected.GetInfo(fullName).Shape.ToArray();
        if (!expectedShape.SequenceEqual(output.Shape))
        {
            return new TensorComparison(fullName, 0, double.NaN, double.NaN, atol, tolerances.Relative,
                $"shape [{string.Join(", ", output.Shape)}], expected [{string.Join(", ", expectedShape)}]");
        }
        float[] reference = expected.ReadFloat32(fullName);
        Func<long, bool> counts = PositionFilter(name, output.Shape, inputs);

        long comparedCount = 0;
        double maxAbs = 0, diffSquares = 0, refSquares = 0;
        bool anyNaN = false;
        for (long i = 0; i < reference.Length; i++)
        {
            if (!counts(i))
            {
                continue;
            }
            double diff = Math.Abs((double)output.Values[i] - reference[i]);
            anyNaN |= double.IsNaN(diff);
            maxAbs = Math.Max(maxAbs, diff);
            diffSquares += diff * diff;
            refSquares += (double)reference[i] * reference[i];
            comparedCount++;
        }
        double relative = refSquares > 0 ? Math.Sqrt(diffSquares / refSquares) : Math.Sqrt(diffSquares);
        string? problem = comparedCount == 0 ? "no position to compare (all masked)"
            : anyNaN ? "NaN where the reference is a number (or the reverse)" : null;
        return new TensorComparison(fullName, comparedCount, maxAbs, relative, atol, tolerances.Relative, problem);
    }

    /// <summary>Which flat indices of a produced tensor are model outputs worth comparing.</summary>
    private static Func<long, bool> PositionFilter(string name, long[] shape, Idefics3Inputs inputs)
    {
        int seq = inputs.SeqLen;
        if (name == "next_token_logprobs")
        {
            // [batch, seq − 1]: where the fixture's target_mask says, else where both tokens are real.
            return inputs.TargetMask is { } target
                ? i => target[i] == 1
                : i =>
                {
                    long b = i / (seq - 1), t = i % (seq - 1);
                    return inputs.AttentionMask[b * seq + t] == 1 && inputs.AttentionMask[b * seq + t + 1] == 1;
                };
        }
        if (name == "logits" || name.StartsWith("text.", StringComparison.Ordinal))
        {
            // [batch, seq, …]: positions whose token is real.
            long perToken = shape.Skip(2).Aggregate(1L, (a, d) => a * d);
            return i => inputs.AttentionMask[i / perToken] == 1;
        }
        return _ => true;
    }
}
