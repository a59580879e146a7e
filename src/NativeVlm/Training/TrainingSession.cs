using NativeVlm.Adapters;
using NativeVlm.Batches;
using NativeVlm.Data;
using NativeVlm.Models;
using NativeVlm.Quantization;
using NativeVlm.Tensors;
using NativeVlm.Training.Dpo;

namespace NativeVlm.Training;

/// <summary>
/// What a training run sets up from a snapshot and its <see cref="TrainingArguments"/> before the
/// <see cref="Trainer{TBatch}"/> runs: the processor and sample builder, the device context, the model
/// (NF4 base weights with quant nf4), LoRA/DoRA adapters on lora_target_modules or else the train_modules
/// made trainable, and the objectives over them. `nativevlm train` and the embedded demo both train
/// through it. Disposing it frees the adapters, the model and the context.
/// </summary>
public sealed class TrainingSession : IDisposable
{
    private readonly string _snapshotDir;
    private readonly BatchCollator _collator;

    private TrainingSession(string snapshotDir, TrainingArguments args, VlmProcessor processor, Context context,
        BaseWeightQuantization quantization, Idefics3Model model, LoraAdapterSet? adapters)
    {
        _snapshotDir = snapshotDir;
        Arguments = args;
        Processor = processor;
        Builder = new SampleBuilder(processor, new SampleLimits(args.MaxLength, args.MaxPromptLength, args.MaxCompletionLength),
            args.AssistantOnlyLoss ? SftLoss.AssistantTurns : SftLoss.WholeText);
        _collator = new BatchCollator(processor.PadTokenId);
        Context = context;
        Quantization = quantization;
        Model = model;
        Adapters = adapters;
        Weights = adapters != null ? TrainedWeights.FromAdapters(adapters) : TrainedWeights.FromModules(model, args.TrainModules);
    }

    /// <summary>Loads the processor and the model of <paramref name="snapshotDir"/> on args.device and creates the adapters.</summary>
    public static TrainingSession Open(string snapshotDir, TrainingArguments args)
    {
        VlmProcessor processor = VlmProcessor.Load(snapshotDir);
        BaseWeightQuantization quantization = args.Quant == "nf4" ? BaseWeightQuantization.Nf4 : BaseWeightQuantization.None;
        Context context = Context.Create(args.Device);
        context.SetBf16MixedPrecision(args.Bf16);
        Idefics3Model? model = null;
        LoraAdapterSet? adapters = null;
        try
        {
            model = Idefics3Model.Load(snapshotDir, context, quantization);
            model.GradientCheckpointing = args.GradientCheckpointing;
            adapters = args.LoraTargetModules.Count > 0
                ? LoraAdapterSet.Create(model.Linears, LoraConfig.Create(TargetModules.FromArgument(args.LoraTargetModules), args.LoraR, args.LoraAlpha,
                    args.LoraDropout, args.UseDora, baseModelNameOrPath: snapshotDir), args.Seed)
                : null;
            return new TrainingSession(snapshotDir, args, processor, context, quantization, model, adapters);
        }
        catch
        {
            adapters?.Dispose();
            model?.Dispose();
            context.Dispose();
            throw;
        }
    }

    public TrainingArguments Arguments { get; }

    public VlmProcessor Processor { get; }

    /// <summary>The sample builder with args' max_length, max_prompt_length, max_completion_length and assistant_only_loss.</summary>
    public SampleBuilder Builder { get; }

    public Context Context { get; }

    public BaseWeightQuantization Quantization { get; }

    public Idefics3Model Model { get; }

    /// <summary>The adapters on lora_target_modules; null when the run trains train_modules instead.</summary>
    public LoraAdapterSet? Adapters { get; }

    /// <summary>What the trainer updates and writes: the adapters, or the train_modules' parameters.</summary>
    public TrainedWeights Weights { get; }

    /// <summary>
    /// DPO over the adapters with args' loss settings (loss_type, loss_weights, beta, label_smoothing,
    /// rpo_alpha). With precompute_ref_log_probs, its reference log-probs come from the on-disk cache in
    /// ref_log_probs_dir (default output_dir/ref_logps), to be filled by PrecomputeReferences.
    /// </summary>
    public DpoTrainingObjective CreateDpoObjective()
    {
        TrainingArguments args = Arguments;
        // The reference is the model with the adapters off, so DPO needs adapters to train.
        LoraAdapterSet adapters = Adapters ?? throw new InvalidOperationException("dpo trains adapters: lora_target_modules is empty");
        var dpo = new DpoObjective(Model, adapters, new DpoLoss(new DpoLossOptions
        {
            LossTypes = args.LossType.Select(DpoLossTypes.Parse).ToList(),
            LossWeights = args.LossWeights,
            Beta = args.Beta,
            LabelSmoothing = args.LabelSmoothing,
            RpoAlpha = args.RpoAlpha,
        }));
        ReferenceLogProbCache? references = args.PrecomputeRefLogProbs
            ? ReferenceLogProbCache.Open(args.RefLogProbsDir ?? Path.Combine(args.OutputDir, ReferenceLogProbCache.DefaultDirectoryName),
                ReferenceLogProbCache.ModelIdentity(_snapshotDir, Quantization, Context.Kind))
            : null;
        return new DpoTrainingObjective(dpo, adapters) { References = references };
    }

    /// <summary>The DPO samples of <paramref name="split"/> of <paramref name="data"/>, read into memory.</summary>
    public SampleList<DpoSample, DpoBatch> ReadDpo(IReadOnlyList<string> data, string split, BadRowPolicy policy) =>
        ReadAll(TrainingSamples.ReadDpoAsync(Builder, data, split, policy, new DatasetSummary()), _collator.CollateDpo);

    /// <summary>The SFT samples of <paramref name="split"/> of <paramref name="data"/>, read into memory.</summary>
    public SampleList<SftSample, Idefics3Inputs> ReadSft(IReadOnlyList<string> data, string split, BadRowPolicy policy) =>
        ReadAll(TrainingSamples.ReadSftAsync(Builder, data, split, policy, new DatasetSummary()), _collator.CollateSft);

    public Trainer<TBatch> CreateTrainer<TBatch>(ITrainingObjective<TBatch> objective, ITrainingData<TBatch> train, ITrainingData<TBatch>? eval,
        ITrainingLog log) =>
        new(Arguments, Weights, objective, train, eval, log);

    public void Dispose()
    {
        Adapters?.Dispose();
        Model.Dispose();
        Context.Dispose();
    }

    /// <summary>Reads on the thread pool and waits: the trainer's loop is synchronous.</summary>
    private static SampleList<TSample, TBatch> ReadAll<TSample, TBatch>(IAsyncEnumerable<TSample> samples, Func<IReadOnlyList<TSample>, TBatch> collate)
    {
        List<TSample> list = Task.Run(async () =>
        {
            var read = new List<TSample>();
            await foreach (TSample sample in samples.ConfigureAwait(false))
            {
                read.Add(sample);
            }
            return read;
        }).GetAwaiter().GetResult();
        return new SampleList<TSample, TBatch>(list, collate);
    }
}
