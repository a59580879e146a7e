using System.Globalization;
using NativeVlm.Autograd;

namespace NativeVlm.Training;

/// <summary>One optimizer step as it happened: the learning rate it used, the norm before clipping and the clip coefficient.</summary>
public sealed record OptimizerStepRecord(long Step, double Loss, float GradNorm, float ClipCoefficient, double LearningRate);

/// <summary>How <see cref="Trainer{TBatch}.Train"/> ended.</summary>
public sealed record TrainingOutcome(long GlobalStep, bool Interrupted, string? ResumedFrom, string? OutputDir);

/// <summary>
/// The HF Trainer loop: per micro-batch the objective's forward and backward of loss /
/// gradient_accumulation_steps; at each accumulation boundary clip_grad_norm_, AdamW step, scheduler
/// step, zero_grad; then logging, evaluation and checkpoints by step count. Each epoch visits the
/// samples in an order drawn from (seed, epoch), batch by batch (the last batch may be short, as
/// drop_last=False), and the last accumulation window of an epoch may hold fewer micro-batches.
/// </summary>
public sealed class Trainer<TBatch>
{
    private readonly TrainingArguments _args;
    private readonly TrainedWeights _weights;
    private readonly ITrainingObjective<TBatch> _objective;
    private readonly ITrainingData<TBatch> _train;
    private readonly ITrainingData<TBatch>? _eval;
    private readonly ITrainingLog _log;

    public Trainer(TrainingArguments args, TrainedWeights weights, ITrainingObjective<TBatch> objective,
        ITrainingData<TBatch> train, ITrainingData<TBatch>? eval, ITrainingLog log)
    {
        args.Validate();
        if (train.Count == 0)
        {
            throw new ArgumentException("the training split has no samples");
        }
        (_args, _weights, _objective, _train, _eval, _log) = (args, weights, objective, train, eval, log);
    }

    /// <summary>Shuffle the samples each epoch (true, as the HF Trainer's RandomSampler); false visits them in order.</summary>
    public bool ShuffleData { get; init; } = true;

    /// <summary>After every optimizer step.</summary>
    public event Action<OptimizerStepRecord>? OptimizerStepped;

    /// <summary>Micro-batches per epoch: ceil(samples / per_device_train_batch_size).</summary>
    public int MicroBatchesPerEpoch => (_train.Count + _args.PerDeviceTrainBatchSize - 1) / _args.PerDeviceTrainBatchSize;

    /// <summary>Optimizer steps per epoch: ceil(micro-batches / gradient_accumulation_steps).</summary>
    public long UpdatesPerEpoch => (MicroBatchesPerEpoch + _args.GradientAccumulationSteps - 1) / _args.GradientAccumulationSteps;

    public long TotalSteps => _args.TotalSteps(UpdatesPerEpoch);

    /// <summary>
    /// Trains to the last step, or until <paramref name="cancellation"/> is set (checked after every
    /// micro-batch: the run stops there as if it crashed, keeping only its checkpoints). Resumes from
    /// <paramref name="resumeFrom"/> when given. Writes the final weights into output_dir.
    /// Runs outside any TensorScope: gradients it creates must outlive the scopes of the micro-batches.
    /// </summary>
    public TrainingOutcome Train(string? resumeFrom = null, CancellationToken cancellation = default)
    {
        if (TensorScope.Current != null)
        {
            throw new InvalidOperationException("Trainer.Train runs outside any TensorScope: the gradients it keeps must outlive them");
        }
        long totalSteps = TotalSteps;
        int microPerEpoch = MicroBatchesPerEpoch;
        int accumulation = _args.GradientAccumulationSteps;
        var schedule = new LearningRateSchedule(_args.LrSchedulerType, _args.LearningRate,
            LearningRateSchedule.ResolveWarmupSteps(_args.WarmupSteps, _args.WarmupRatio, totalSteps), totalSteps);
        using var optimizer = new AdamW(_weights.Parameters)
        {
            Beta1 = (float)_args.AdamBeta1,
            Beta2 = (float)_args.AdamBeta2,
            Epsilon = (float)_args.AdamEpsilon,
            WeightDecay = (float)_args.WeightDecay,
        };
        optimizer.ZeroGrad();
        _weights.Adapters?.SeedDropout(_args.Seed);

        long globalStep = 0;
        int dataEpoch = 0, microInEpoch = 0;
        var history = new List<IReadOnlyDictionary<string, double>>();
        if (resumeFrom != null)
        {
            TrainingPosition position = TrainingCheckpoint.Load(resumeFrom, _weights, optimizer);
            CheckResumable(resumeFrom, position, microPerEpoch);
            (globalStep, dataEpoch, microInEpoch) = (position.GlobalStep, position.DataEpoch, position.MicroBatchInEpoch);
            history.AddRange(position.LogHistory);
            if (_weights.Adapters != null && position.DropoutState != null)
            {
                _weights.Adapters.DropoutRandom.State = position.DropoutState;
            }
            _log.Event($"resumed from {resumeFrom} at step {globalStep}");
        }

        var pending = new MetricAverages();
        if (_weights.Adapters != null)
        {
            _weights.Adapters.Training = true;
        }
        try
        {
            while (globalStep < totalSteps)
            {
                int[] order = EpochOrder(dataEpoch);
                while (microInEpoch < microPerEpoch && globalStep < totalSteps)
                {
                    int windowEnd = Math.Min(microInEpoch - microInEpoch % accumulation + accumulation, microPerEpoch);
                    double windowLoss = 0;
                    int windowCount = windowEnd - microInEpoch;
                    for (; microInEpoch < windowEnd; microInEpoch++)
                    {
                        TBatch batch = _train.Collate(BatchIndices(order, microInEpoch, _args.PerDeviceTrainBatchSize));
                        ObjectiveStep result = _objective.Step(batch, 1.0 / accumulation);
                        windowLoss += LossOf(result);
                        pending.Add(result.Metrics);
                        if (cancellation.IsCancellationRequested)
                        {
                            _log.Event($"interrupted after micro-batch {microInEpoch} of epoch {dataEpoch} (step {globalStep})");
                            return new TrainingOutcome(globalStep, true, resumeFrom, null);
                        }
                    }

                    double lr = schedule.At(globalStep);
                    (float norm, float coefficient) = GradientClipping.ClipGradNorm(_weights.Parameters, _args.MaxGradNorm);
                    optimizer.Update((float)lr);
                    optimizer.ZeroGrad();
                    globalStep++;
                    OptimizerStepped?.Invoke(new OptimizerStepRecord(globalStep, windowLoss / windowCount, norm, coefficient, lr));

                    (int nextEpoch, int nextMicro) = microInEpoch >= microPerEpoch ? (dataEpoch + 1, 0) : (dataEpoch, microInEpoch);
                    double epoch = dataEpoch + (double)microInEpoch / microPerEpoch;
                    if (globalStep % _args.LoggingSteps == 0 || globalStep == totalSteps)
                    {
                        // As the HF Trainer: the learning rate after scheduler.step(), the norm of the last step.
                        Dictionary<string, double> metrics = pending.TakeAverages();
                        metrics["grad_norm"] = norm;
                        metrics["learning_rate"] = schedule.At(globalStep);
                        Record(history, globalStep, epoch, metrics);
                    }
                    if (_eval != null && globalStep % (_args.EvalSteps ?? _args.LoggingSteps) == 0)
                    {
                        Record(history, globalStep, epoch, Evaluate());
                    }
                    if (globalStep % _args.SaveSteps == 0)
                    {
                        var position = new TrainingPosition(globalStep, nextEpoch, nextMicro, microPerEpoch, _args.Seed, ShuffleData,
                            _weights.Adapters?.DropoutRandom.State, history.ToList());
                        string path = TrainingCheckpoint.Save(_args.OutputDir, _weights, optimizer, position, epoch);
                        _log.Event($"checkpoint written: {path}");
                        if (_args.SaveTotalLimit is int limit)
                        {
                            foreach (string removed in TrainingCheckpoint.Prune(_args.OutputDir, limit))
                            {
                                _log.Event($"checkpoint removed (save_total_limit {limit}): {removed}");
                            }
                        }
                    }
                }
                if (microInEpoch >= microPerEpoch)
                {
                    (dataEpoch, microInEpoch) = (dataEpoch + 1, 0);
                }
            }
        }
        finally
        {
            if (_weights.Adapters != null)
            {
                _weights.Adapters.Training = false;
            }
            optimizer.ZeroGrad();
        }
        _weights.Save(_args.OutputDir);
        _log.Event($"final weights written to {_args.OutputDir} ({string.Join(", ", _weights.Files)})");
        return new TrainingOutcome(globalStep, false, resumeFrom, _args.OutputDir);
    }

    /// <summary>Mean of the objective's metrics over the eval split (in order, adapters in eval mode), prefixed eval_.</summary>
    public Dictionary<string, double> Evaluate()
    {
        ITrainingData<TBatch> eval = _eval ?? throw new InvalidOperationException("no eval split was given");
        bool training = _weights.Adapters?.Training ?? false;
        if (_weights.Adapters != null)
        {
            _weights.Adapters.Training = false;
        }
        try
        {
            var averages = new MetricAverages();
            int[] order = Enumerable.Range(0, eval.Count).ToArray();
            int batches = (eval.Count + _args.PerDeviceEvalBatchSize - 1) / _args.PerDeviceEvalBatchSize;
            for (int b = 0; b < batches; b++)
            {
                averages.Add(_objective.Evaluate(eval.Collate(BatchIndices(order, b, _args.PerDeviceEvalBatchSize))).Metrics);
            }
            return averages.TakeAverages().ToDictionary(p => "eval_" + p.Key, p => p.Value);
        }
        finally
        {
            if (_weights.Adapters != null)
            {
                _weights.Adapters.Training = training;
            }
        }
    }

    private void Record(List<IReadOnlyDictionary<string, double>> history, long step, double epoch, Dictionary<string, double> metrics)
    {
        _log.Log(step, epoch, metrics);
        var entry = new Dictionary<string, double>(metrics) { ["epoch"] = epoch, ["step"] = step };
        history.Add(entry);
    }

    private void CheckResumable(string directory, TrainingPosition position, int microPerEpoch)
    {
        if (position.MicroBatchesPerEpoch != microPerEpoch)
        {
            throw new ArgumentException($"checkpoint {directory} was written with {position.MicroBatchesPerEpoch} micro-batches per epoch, " +
                $"this run has {microPerEpoch}: the data or per_device_train_batch_size changed");
        }
        if (position.Seed != _args.Seed || position.Shuffle != ShuffleData)
        {
            throw new ArgumentException($"checkpoint {directory} was written with seed {position.Seed} (shuffle {position.Shuffle}), " +
                $"this run has seed {_args.Seed} (shuffle {ShuffleData}): the data order would differ");
        }
        if (position.GlobalStep > TotalSteps)
        {
            throw new ArgumentException($"checkpoint {directory} is at step {position.GlobalStep}, past this run's last step {TotalSteps}");
        }
    }

    /// <summary>The epoch's sample order: identity, or a Fisher–Yates shuffle drawn from (seed, epoch), so no generator state needs saving.</summary>
    private int[] EpochOrder(int epoch)
    {
        int[] order = Enumerable.Range(0, _train.Count).ToArray();
        if (ShuffleData)
        {
            var random = new Xoshiro256(((ulong)(uint)_args.Seed << 32) | (uint)epoch);
            for (int i = order.Length - 1; i > 0; i--)
            {
                int j = random.Next(i + 1);
                (order[i], order[j]) = (order[j], order[i]);
            }
        }
        return order;
    }

    private static int[] BatchIndices(int[] order, int batch, int batchSize) =>
        order.Skip(batch * batchSize).Take(batchSize).ToArray();

    private static double LossOf(ObjectiveStep step) =>
        step.Metrics.TryGetValue("loss", out double loss)
            ? loss
            : throw new InvalidOperationException("the objective's metrics have no 'loss'");

    /// <summary>Running means of metrics since the last time they were taken.</summary>
    private sealed class MetricAverages
    {
        private readonly Dictionary<string, (double Sum, int Count)> _sums = new(StringComparer.Ordinal);

        public void Add(IReadOnlyDictionary<string, double> metrics)
        {
            foreach ((string key, double value) in metrics)
            {
                (double sum, int count) = _sums.GetValueOrDefault(key);
                _sums[key] = (sum + value, count + 1);
            }
        }

        public Dictionary<string, double> TakeAverages()
        {
            var averages = _sums.ToDictionary(p => p.Key, p => p.Value.Sum / p.Value.Count, StringComparer.Ordinal);
            _sums.Clear();
            return averages;
        }
    }
}
