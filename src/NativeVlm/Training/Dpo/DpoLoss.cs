namespace NativeVlm.Training.Dpo;

/// <summary>
/// The DPO objective's settings under TRL's names: <c>loss_type</c> (a list, mixed with
/// <c>loss_weights</c> as MPO does), <c>beta</c>, <c>label_smoothing</c>, <c>rpo_alpha</c>, <c>reference_free</c>.
/// </summary>
public sealed record DpoLossOptions
{
    public IReadOnlyList<DpoLossType> LossTypes { get; init; } = [DpoLossType.Sigmoid];

    /// <summary>One weight per loss type; null = 1 for each (TRL's default).</summary>
    public IReadOnlyList<double>? LossWeights { get; init; }

    public double Beta { get; init; } = 0.1;

    public double LabelSmoothing { get; init; }

    /// <summary>RPO: adds rpo_alpha · nll_loss (the NLL of the chosen completions) to every pair's loss.</summary>
    public double? RpoAlpha { get; init; }

    /// <summary>Ignores the reference model (its log-ratios are taken as 0) in the loss; rewards still use it, as TRL.</summary>
    public bool ReferenceFree { get; init; }

    /// <summary>
    /// TRL feeds the losses length-averaged log-probs (Σ / completion tokens) when the loss types include ipo
    /// (for every loss type of the list, and for the logged logps).
    /// </summary>
    public bool AveragesLogProbs => LossTypes.Contains(DpoLossType.Ipo);

    /// <summary>The NLL of the chosen completions is needed: rpo_alpha is set or sft is one of the loss types.</summary>
    public bool NeedsNll => RpoAlpha != null || LossTypes.Contains(DpoLossType.Sft);

    public double Weight(int index) => LossWeights?[index] ?? 1.0;

    /// <summary>Every invalid setting, named, before any work.</summary>
    public void Validate()
    {
        var problems = new List<string>();
        if (LossTypes.Count == 0)
        {
            problems.Add("loss_type needs at least one loss type");
        }
        if (LossWeights != null && LossWeights.Count != LossTypes.Count)
        {
            problems.Add($"loss_weights has {LossWeights.Count} values for {LossTypes.Count} loss types");
        }
        if (LossWeights != null && LossWeights.Any(w => !double.IsFinite(w)))
        {
            problems.Add("loss_weights must be finite");
        }
        if (!(Beta > 0) || !double.IsFinite(Beta))
        {
            problems.Add($"beta must be positive, is {Beta}");
        }
        if (!(LabelSmoothing >= 0 && LabelSmoothing <= 0.5))
        {
            problems.Add($"label_smoothing must be in [0, 0.5], is {LabelSmoothing}");
        }
        if (LabelSmoothing >= 0.5 && LossTypes.Contains(DpoLossType.Robust))
        {
            problems.Add("robust divides by 1 − 2·label_smoothing: label_smoothing must be below 0.5");
        }
        if (RpoAlpha is double alpha && !double.IsFinite(alpha))
        {
            problems.Add("rpo_alpha must be finite");
        }
        if (problems.Count > 0)
        {
            throw new ArgumentException(string.Join("; ", problems));
        }
    }
}

/// <summary>
/// TRL's RunningMoments (trl/trainer/utils.py) as bco_pair uses it: the running mean of each batch's mean
/// reward, its baseline δ. Part of a checkpoint: save <see cref="State"/> and restore it with <see cref="Restore"/>.
/// </summary>
public sealed class RunningMoments
{
    public double Mean { get; private set; }

    public double Std { get; private set; } = 1;

    public double Var { get; private set; } = 1;

    public double Count { get; private set; } = 1e-24;

    public RunningMomentsState State => new(Mean, Std, Var, Count);

    public void Restore(RunningMomentsState state) => (Mean, Std, Var, Count) = (state.Mean, state.Std, state.Var, state.Count);

    /// <summary>Folds in a batch of values (TRL passes one: the batch's mean reward), with TRL's arithmetic.</summary>
    public void Update(IReadOnlyList<double> xs)
    {
        int n = xs.Count;
        double xsMean = xs.Average();
        double xsVar = xs.Sum(x => (x - xsMean) * (x - xsMean)) / n; // unbiased=False
        double delta = xsMean - Mean;
        double totCount = Count + n;
        double newSum = xsVar * n;
        double oldSum = Var * Count + delta * delta * Count * n / totCount;
        double totSum = oldSum + newSum;
        Mean += delta * n / totCount;
        double newVar = totSum / totCount;
        Std = Math.Sqrt(newVar * totCount / (totCount - 1));
        Var = newVar;
        Count = totCount;
    }
}

/// <summary>The state of <see cref="RunningMoments"/>, for checkpoints.</summary>
public sealed record RunningMomentsState(double Mean, double Std, double Var, double Count);

/// <summary>
/// One batch's DPO loss: <see cref="Loss"/> = mean of <see cref="Losses"/> (per pair, the weighted sum of
/// the loss types plus rpo_alpha · NLL), the rewards β·(policy − reference) weighted as the losses are
/// (sft adds 0), and d Loss / d input: per pair for the policy log-probs as given, and for the NLL.
/// </summary>
public sealed record DpoLossResult(
    double Loss,
    double[] Losses,
    double[] ChosenRewards,
    double[] RejectedRewards,
    double[] GradPolicyChosen,
    double[] GradPolicyRejected,
    double GradNll)
{
    /// <summary>TRL's rewards/accuracies: the fraction of pairs whose chosen reward is above the rejected one.</summary>
    public double Accuracy => Enumerable.Range(0, Losses.Length).Average(i => ChosenRewards[i] > RejectedRewards[i] ? 1.0 : 0.0);

    public double Margin => Enumerable.Range(0, Losses.Length).Average(i => ChosenRewards[i] - RejectedRewards[i]);
}

/// <summary>
/// TRL's DPOTrainer.dpo_loss (v0.12.1; the list of loss types and weights as TRL's MPO combines them) in double
/// on the host from per-pair sequence log-probs, with its gradient. Holds bco_pair's running baseline
/// (<see cref="Running"/>), which every <see cref="Compute"/> with bco_pair updates, as TRL does per micro-batch.
/// </summary>
public sealed class DpoLoss
{
    /// <summary>exo_pair's ε when label_smoothing is 0 (TRL sets label_smoothing to it).</summary>
    public const double ExoDefaultEpsilon = 1e-3;

    public DpoLoss(DpoLossOptions options, RunningMoments? running = null)
    {
        options.Validate();
        Options = options;
        Running = running ?? new RunningMoments();
    }

    public DpoLossOptions Options { get; }

    /// <summary>bco_pair's baseline δ (checkpoint state).</summary>
    public RunningMoments Running { get; }

    /// <summary>
    /// The loss of a batch of pairs from the policy's and the reference's log-probs (summed, or
    /// length-averaged when <see cref="DpoLossOptions.AveragesLogProbs"/>, as the caller feeds them) and
    /// <paramref name="nllLoss"/>, the NLL of the chosen completions (needed when <see cref="DpoLossOptions.NeedsNll"/>).
    /// </summary>
    public DpoLossResult Compute(double[] policyChosen, double[] policyRejected, double[] referenceChosen, double[] referenceRejected,
        double nllLoss = double.NaN)
    {
        int n = policyChosen.Length;
        if (n == 0 || policyRejected.Length != n || referenceChosen.Length != n || referenceRejected.Length != n)
        {
            throw new ArgumentException($"log-probs for {n} pairs: every input needs the same, non-zero length");
        }
        if (Options.NeedsNll && !double.IsFinite(nllLoss))
        {
            throw new ArgumentException("sft / rpo_alpha need the NLL of the chosen completions");
        }
        double beta = Options.Beta;
        bool free = Options.ReferenceFree;
        var losses = new double[n];
        var chosenRewards = new double[n];
        var rejectedRewards = new double[n];
        var gradChosen = new double[n];   // d Σ_i losses_i / d policy_chosen_i (divided by n at the end)
        var gradRejected = new double[n];
        double gradNll = 0;

        // chosen_logratios = chosen − (not reference_free)·ref_chosen, likewise rejected; logits = their difference.
        double[] a = Enumerable.Range(0, n).Select(i => policyChosen[i] - (free ? 0 : referenceChosen[i])).ToArray();
        double[] b = Enumerable.Range(0, n).Select(i => policyRejected[i] - (free ? 0 : referenceRejected[i])).ToArray();
        double[] logits = Enumerable.Range(0, n).Select(i => a[i] - b[i]).ToArray();

        for (int k = 0; k < Options.LossTypes.Count; k++)
        {
            DpoLossType type = Options.LossTypes[k];
            double w = Options.Weight(k);
            var l = new double[n];
            var dc = new double[n];
            var dr = new double[n];
            switch (type)
            {
                case DpoLossType.Sigmoid:
                    for (int i = 0; i < n; i++)
                    {
                        (l[i], double d) = SmoothedSigmoid(beta * logits[i], Options.LabelSmoothing);
                        dc[i] = beta * d;
                        dr[i] = -beta * d;
                    }
                    break;
                case DpoLossType.Robust:
                    {
                        double ls = Options.LabelSmoothing, scale = 1 / (1 - 2 * ls);
                        for (int i = 0; i < n; i++)
                        {
                            double z = beta * logits[i];
                            l[i] = (-(1 - ls) * LogSigmoid(z) + ls * LogSigmoid(-z)) * scale;
                            double d = (-(1 - ls) * Sigmoid(-z) - ls * Sigmoid(z)) * scale;
                            dc[i] = beta * d;
                            dr[i] = -beta * d;
                        }
                        break;
                    }
                case DpoLossType.ExoPair:
                    {
                        double eps = Options.LabelSmoothing == 0 ? ExoDefaultEpsilon : Options.LabelSmoothing;
                        for (int i = 0; i < n; i++)
                        {
                            double z = beta * logits[i];
                            double p = LogSigmoid(z) - Math.Log(1 - eps), q = LogSigmoid(-z) - Math.Log(eps);
                            l[i] = Sigmoid(z) * p + Sigmoid(-z) * q;
                            double d = Sigmoid(z) * Sigmoid(-z) * (p - q);
                            dc[i] = beta * d;
                            dr[i] = -beta * d;
                        }
                        break;
                    }
                case DpoLossType.Hinge:
                    for (int i = 0; i < n; i++)
                    {
                        double margin = 1 - beta * logits[i];
                        l[i] = Math.Max(margin, 0);
                        double d = margin > 0 ? -1 : 0; // relu'(0) = 0, as torch
                        dc[i] = beta * d;
                        dr[i] = -beta * d;
                    }
                    break;
                case DpoLossType.Ipo:
                    for (int i = 0; i < n; i++)
                    {
                        double e = logits[i] - 1 / (2 * beta);
                        l[i] = e * e;
                        dc[i] = 2 * e;
                        dr[i] = -2 * e;
                    }
                    break;
                case DpoLossType.BcoPair:
                    {
                        // δ = running mean of the batches' mean reward (this batch's included), detached.
                        double meanReward = Enumerable.Range(0, n).Sum(i => beta * a[i] + beta * b[i]) / (2 * n);
                        Running.Update([meanReward]);
                        double delta = Running.Mean;
                        for (int i = 0; i < n; i++)
                        {
                            double u = beta * a[i] - delta, v = beta * b[i] - delta;
                            l[i] = -LogSigmoid(u) - LogSigmoid(-v);
                            dc[i] = -beta * Sigmoid(-u);
                            dr[i] = beta * Sigmoid(v);
                        }
                        break;
                    }
                case DpoLossType.SppoHard:
                    for (int i = 0; i < n; i++)
                    {
                        double ea = a[i] - 0.5 / beta, eb = b[i] + 0.5 / beta;
                        l[i] = ea * ea + eb * eb;
                        dc[i] = 2 * ea;
                        dr[i] = 2 * eb;
                    }
                    break;
                case DpoLossType.NcaPair:
                    for (int i = 0; i < n; i++)
                    {
                        double cr = beta * a[i], rr = beta * b[i];
                        l[i] = -LogSigmoid(cr) - 0.5 * LogSigmoid(-cr) - 0.5 * LogSigmoid(-rr);
                        dc[i] = beta * (-Sigmoid(-cr) + 0.5 * Sigmoid(cr));
                        dr[i] = beta * 0.5 * Sigmoid(rr);
                    }
                    break;
                case DpoLossType.Aot:
                case DpoLossType.AotPair:
                    {
                        // aot: sort(π_c − π_r) − sort(ρ_c − ρ_r); aot_pair: sort(π_c − ρ_c) − sort(π_r − ρ_r). The
                        // gradient of sorted position j goes back to the element that sorted there.
                        bool pair = type == DpoLossType.AotPair;
                        double[] first = pair ? a : Enumerable.Range(0, n).Select(i => policyChosen[i] - policyRejected[i]).ToArray();
                        double[] second = pair ? b : Enumerable.Range(0, n).Select(i => free ? 0 : referenceChosen[i] - referenceRejected[i]).ToArray();
                        int[] firstOrder = SortOrder(first), secondOrder = SortOrder(second);
                        for (int j = 0; j < n; j++)
                        {
                            double delta = first[firstOrder[j]] - second[secondOrder[j]];
                            (l[j], double d) = SmoothedSigmoid(beta * delta, Options.LabelSmoothing);
                            int f = firstOrder[j];
                            if (pair)
                            {
                                dc[f] += beta * d;               // first = π_c − ρ_c
                                dr[secondOrder[j]] -= beta * d;  // second = π_r − ρ_r
                            }
                            else
                            {
                                dc[f] += beta * d;               // first = π_c − π_r
                                dr[f] -= beta * d;
                            }
                        }
                        break;
                    }
                case DpoLossType.ApoZero:
                    for (int i = 0; i < n; i++)
                    {
                        double sc = Sigmoid(beta * a[i]), sr = Sigmoid(beta * b[i]);
                        l[i] = 1 - sc + sr;
                        dc[i] = -beta * sc * (1 - sc);
                        dr[i] = beta * sr * (1 - sr);
                    }
                    break;
                case DpoLossType.ApoDown:
                    for (int i = 0; i < n; i++)
                    {
                        double sc = Sigmoid(beta * a[i]), sm = Sigmoid(beta * (a[i] - b[i]));
                        l[i] = sc + 1 - sm;
                        dc[i] = beta * sc * (1 - sc) - beta * sm * (1 - sm);
                        dr[i] = beta * sm * (1 - sm);
                    }
                    break;
                case DpoLossType.Sft:
                    // nll_loss expanded to every pair; no preference rewards.
                    for (int i = 0; i < n; i++)
                    {
                        l[i] = nllLoss;
                    }
                    gradNll += w; // d mean(w·nll) / d nll
                    break;
                default:
                    throw new ArgumentOutOfRangeException(nameof(type), type, "unknown loss type");
            }
            for (int i = 0; i < n; i++)
            {
                losses[i] += w * l[i];
                gradChosen[i] += w * dc[i];
                gradRejected[i] += w * dr[i];
                if (type != DpoLossType.Sft)
                {
                    chosenRewards[i] += w * beta * (policyChosen[i] - referenceChosen[i]);
                    rejectedRewards[i] += w * beta * (policyRejected[i] - referenceRejected[i]);
                }
            }
        }
        if (Options.RpoAlpha is double alpha)
        {
            for (int i = 0; i < n; i++)
            {
                losses[i] += alpha * nllLoss;
            }
            gradNll += alpha;
        }
        return new DpoLossResult(losses.Average(), losses, chosenRewards, rejectedRewards,
            gradChosen.Select(g => g / n).ToArray(), gradRejected.Select(g => g / n).ToArray(), gradNll);
    }

    /// <summary>−(1−ls)·log σ(z) − ls·log σ(−z) and its derivative in z.</summary>
    private static (double Value, double Derivative) SmoothedSigmoid(double z, double ls) =>
        (-(1 - ls) * LogSigmoid(z) - ls * LogSigmoid(-z), -(1 - ls) * Sigmoid(-z) + ls * Sigmoid(z));

    /// <summary>Indices that sort <paramref name="values"/> ascending (ties by index).</summary>
    private static int[] SortOrder(double[] values)
    {
        int[] order = Enumerable.Range(0, values.Length).ToArray();
        Array.Sort(order, (x, y) => values[x] != values[y] ? values[x].CompareTo(values[y]) : x.CompareTo(y));
        return order;
    }

    internal static double Sigmoid(double z) => z >= 0 ? 1 / (1 + Math.Exp(-z)) : Math.Exp(z) / (1 + Math.Exp(z));

    internal static double LogSigmoid(double z) => z >= 0 ? -Math.Log(1 + Math.Exp(-z)) : z - Math.Log(1 + Math.Exp(z));
}
