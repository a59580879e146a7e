namespace NativeVlm.Generation;

/// <summary>
/// The token choice of one row from its step logits (vocab), as transformers v4.46.3's generate makes
/// it: greedy = the first index of the largest logit (torch.argmax); sampling = the warpers
/// _get_logits_processor adds for do_sample, in its order — TemperatureLogitsWarper (unless 1.0),
/// TopKLogitsWarper (unless 0), TopPLogitsWarper (unless 1.0), each with min_tokens_to_keep 1 — then a
/// draw from softmax of the warped logits. Removed tokens get −∞, torch's filter_value. The draw uses
/// the caller's generator (torch's own stream cannot be reproduced): the same seed gives the same tokens.
/// </summary>
public static class LogitsWarpers
{
    /// <summary>The index of the largest logit, the first one on ties.</summary>
    public static int Argmax(ReadOnlySpan<float> logits)
    {
        int best = 0;
        for (int i = 1; i < logits.Length; i++)
        {
            if (logits[i] > logits[best])
            {
                best = i;
            }
        }
        return best;
    }

    /// <summary>Temperature, top-k and top-p applied in place, each only where transformers would add it.</summary>
    public static void Warp(Span<float> logits, double temperature, int topK, double topP)
    {
        if (temperature != 1.0)
        {
            Temperature(logits, temperature);
        }
        if (topK != 0)
        {
            TopK(logits, topK);
        }
        if (topP < 1.0)
        {
            TopP(logits, topP);
        }
    }

    /// <summary>scores / temperature, in float32 as torch divides.</summary>
    public static void Temperature(Span<float> logits, double temperature)
    {
        var t = (float)temperature;
        for (int i = 0; i < logits.Length; i++)
        {
            logits[i] /= t;
        }
    }

    /// <summary>Keeps the logits ≥ the k-th largest (ties with it kept, as scores &lt; topk(...)[-1] removes); k is capped at the vocabulary.</summary>
    public static void TopK(Span<float> logits, int k)
    {
        k = Math.Min(Math.Max(k, 1), logits.Length);
        float[] sorted = logits.ToArray();
        Array.Sort(sorted);
        float kth = sorted[^k];
        for (int i = 0; i < logits.Length; i++)
        {
            if (logits[i] < kth)
            {
                logits[i] = float.NegativeInfinity;
            }
        }
    }

    /// <summary>
    /// Nucleus filtering: with the logits sorted ascending and p their softmax's cumulative sum, removes
    /// the tokens where p ≤ 1 − top_p, always keeping the largest. The probabilities are summed in
    /// double; transformers sums float32, which can decide otherwise only for a token whose cumulative
    /// probability lies within float rounding of 1 − top_p.
    /// </summary>
    public static void TopP(Span<float> logits, double topP)
    {
        int[] order = Enumerable.Range(0, logits.Length).ToArray();
        float[] keys = logits.ToArray();
        Array.Sort(keys, order); // ascending
        double[] probabilities = Softmax(keys);
        double cumulative = 0, threshold = 1 - topP;
        for (int j = 0; j < order.Length - 1; j++) // the last (largest) always stays
        {
            cumulative += probabilities[j];
            if (cumulative <= threshold)
            {
                logits[order[j]] = float.NegativeInfinity;
            }
        }
    }

    /// <summary>A draw from softmax(logits): the first index whose cumulative probability exceeds a uniform number in [0, 1).</summary>
    public static int Sample(ReadOnlySpan<float> logits, Random random)
    {
        double[] probabilities = Softmax(logits);
        double u = random.NextDouble(), cumulative = 0;
        int last = -1;
        for (int i = 0; i < probabilities.Length; i++)
        {
            if (probabilities[i] == 0)
            {
                continue;
            }
            last = i;
            cumulative += probabilities[i];
            if (u < cumulative)
            {
                return i;
            }
        }
        // Rounding left the total just under u: the last token with any probability.
        return last >= 0 ? last : throw new ArgumentException("every logit is −∞: no token can be drawn");
    }

    /// <summary>softmax in double: exp(x − max) / Σ; −∞ gives exactly 0.</summary>
    public static double[] Softmax(ReadOnlySpan<float> logits)
    {
        float max = float.NegativeInfinity;
        foreach (float x in logits)
        {
            max = Math.Max(max, x);
        }
        var result = new double[logits.Length];
        if (float.IsNegativeInfinity(max))
        {
            return result;
        }
        double sum = 0;
        for (int i = 0; i < logits.Length; i++)
        {
            result[i] = Math.Exp((double)logits[i] - max);
            sum += result[i];
        }
        for (int i = 0; i < result.Length; i++)
        {
            result[i] /= sum;
        }
        return result;
    }
}
