using NativeVlm.Autograd;
using NativeVlm.IO;
using NativeVlm.Nn;
using NativeVlm.Tensors;
using NativeVlm.Training;

namespace NativeVlm.Adapters;

/// <summary>
/// The adapters of one LoRA config on a model's Linear modules — what PEFT's PeftModel adds to a
/// transformers model: made fresh (<see cref="Create"/>) or read from PEFT's files
/// (<see cref="Load"/>), written in PEFT's format (<see cref="Save"/>), switched off and on in one
/// call (<see cref="Disable"/>; the DPO reference model is the same model with adapters off), and
/// merged into the base weights (<see cref="MergeAndUnload"/>). Owns the adapter tensors (f32,
/// trainable) and detaches them from the modules when disposed.
/// </summary>
public sealed class LoraAdapterSet : IDisposable
{
    public const string WeightsFileName = "adapter_model.safetensors";

    /// <summary>Every key of PEFT's adapter file starts here: PeftModel.base_model (the LoraModel) .model (the transformers model).</summary>
    public const string KeyPrefix = "base_model.model.";

    private readonly List<LoraAdapter> _adapters = [];

    private LoraAdapterSet(LoraConfig config) => Config = config;

    public LoraConfig Config { get; }

    /// <summary>One adapter per targeted module, in the modules' order (which is PEFT's file order).</summary>
    public IReadOnlyList<LoraAdapter> Adapters => _adapters;

    /// <summary>While false, every adapted module computes its base output only.</summary>
    public bool Enabled { get; set; } = true;

    /// <summary>Dropout acts only while training (nn.Module.train()); off by default, as for evaluation.</summary>
    public bool Training { get; set; }

    /// <summary>Where dropout masks come from; <see cref="SeedDropout"/> restarts it. Its state is readable, for training checkpoints.</summary>
    public Xoshiro256 DropoutRandom { get; private set; } = new(0);

    /// <summary>
    /// Restarts the dropout mask generator. The masks of a forward depend on every draw before it; a
    /// recomputing gradient checkpoint sets the generator back to redraw its segment's masks
    /// (<see cref="Checkpoint.BeforeDrawing"/>).
    /// </summary>
    public void SeedDropout(int seed) => DropoutRandom = new Xoshiro256((ulong)seed);

    /// <summary>Switches the adapters off until the result is disposed (PEFT's <c>with model.disable_adapter():</c>).</summary>
    public IDisposable Disable() => new Switch(this, Enabled);

    private sealed class Switch : IDisposable
    {
        private readonly LoraAdapterSet _set;
        private readonly bool _restore;

        public Switch(LoraAdapterSet set, bool restore)
        {
            (_set, _restore) = (set, restore);
            set.Enabled = false;
        }

        public void Dispose() => _set.Enabled = _restore;
    }

    /// <summary>Every adapter tensor under PEFT's key (base_model.model.&lt;module&gt;.lora_A.weight, …), in file order.</summary>
    public IEnumerable<(string Key, Tensor Tensor)> NamedParameters =>
        _adapters.SelectMany(a => a.NamedParameters.Select(p => ($"{KeyPrefix}{a.Module.Name}.{p.Name}", p.Tensor)));

    public IEnumerable<Tensor> Parameters => NamedParameters.Select(p => p.Tensor);

    /// <summary>
    /// New adapters on the modules that <paramref name="config"/> targets, initialised as PEFT does:
    /// lora_A by init_lora_weights and lora_B zero (both nn.Linear's default when it is false), DoRA's
    /// magnitude = ‖W + s·B·A‖ per row (‖W‖ when B is zero); values drawn from <paramref name="seed"/>.
    /// </summary>
    public static LoraAdapterSet Create(IReadOnlyList<Linear> modules, LoraConfig config, int seed)
    {
        var set = new LoraAdapterSet(config);
        var random = new Random(seed);
        try
        {
            foreach (Linear module in Targets(modules, config))
            {
                (int rank, float scaling) = RankAndScaling(config, module);
                long inFeatures = module.InFeatures, outFeatures = module.OutFeatures;
                Context ctx = module.Weight.Context;
                float[] a = config.InitLoraWeights == LoraInit.Gaussian
                    ? Normal(random, rank * inFeatures, std: 1.0 / rank)
                    : Uniform(random, rank * inFeatures, bound: 1 / Math.Sqrt(inFeatures));
                float[] b = config.InitLoraWeights == LoraInit.Off
                    ? Uniform(random, outFeatures * rank, bound: 1 / Math.Sqrt(rank))
                    : new float[outFeatures * rank];
                Tensor aTensor = Tensor.FromArray(ctx, a, rank, inFeatures), bTensor = Tensor.FromArray(ctx, b, outFeatures, rank);
                Tensor? magnitude = null;
                if (config.UseDora)
                {
                    magnitude = LoraAdapter.InitialMagnitude(module.Weight, aTensor, bTensor, scaling);
                }
                set.Attach(module, rank, scaling, config.LoraDropout, aTensor, bTensor, magnitude);
            }
            return set;
        }
        catch
        {
            set.Dispose();
            throw;
        }
    }

    /// <summary>
    /// The adapter PEFT's save_pretrained wrote to <paramref name="directory"/> (adapter_config.json,
    /// adapter_model.safetensors) on the modules its config targets. The file must hold exactly the
    /// tensors those modules need, each of the shape the module and its rank imply.
    /// </summary>
    public static LoraAdapterSet Load(IReadOnlyList<Linear> modules, string directory)
    {
        LoraConfig config = LoraConfig.Load(directory);
        string weightsPath = Path.Combine(directory, WeightsFileName);
        using SafeTensorsReader reader = SafeTensorsReader.Open(weightsPath);
        List<Linear> targets = Targets(modules, config);

        var expected = new List<(string Key, long[] Shape)>();
        foreach (Linear module in targets)
        {
            int rank = RankAndScaling(config, module).Rank;
            string prefix = $"{KeyPrefix}{module.Name}.";
            expected.Add(($"{prefix}lora_A.weight", [rank, module.InFeatures]));
            expected.Add(($"{prefix}lora_B.weight", [module.OutFeatures, rank]));
            if (config.UseDora)
            {
                expected.Add(($"{prefix}lora_magnitude_vector", [module.OutFeatures]));
            }
        }
        reader.RequireNames(expected.Select(e => e.Key));
        foreach ((string key, long[] shape) in expected)
        {
            long[] actual = reader.GetInfo(key).Shape.ToArray();
            if (!actual.SequenceEqual(shape))
            {
                throw new SafeTensorsException(weightsPath, key,
                    $"is [{string.Join(", ", actual)}], the module and adapter_config.json imply [{string.Join(", ", shape)}]");
            }
        }

        var set = new LoraAdapterSet(config);
        try
        {
            foreach (Linear module in targets)
            {
                (int rank, float scaling) = RankAndScaling(config, module);
                string prefix = $"{KeyPrefix}{module.Name}.";
                Context ctx = module.Weight.Context;
                set.Attach(module, rank, scaling, config.LoraDropout,
                    reader.ToTensor(ctx, $"{prefix}lora_A.weight"), reader.ToTensor(ctx, $"{prefix}lora_B.weight"),
                    config.UseDora ? reader.ToTensor(ctx, $"{prefix}lora_magnitude_vector") : null);
            }
            return set;
        }
        catch
        {
            set.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Writes adapter_config.json and adapter_model.safetensors into <paramref name="directory"/>
    /// (created if missing) as PEFT's save_pretrained does: PEFT's key names, f32, module order.
    /// </summary>
    public void Save(string directory)
    {
        Directory.CreateDirectory(directory);
        var writer = new SafeTensorsWriter();
        foreach ((string key, Tensor tensor) in NamedParameters)
        {
            writer.Add(key, tensor);
        }
        writer.Save(Path.Combine(directory, WeightsFileName));
        Config.Save(directory);
    }

    /// <summary>
    /// Folds every adapter into its module's base weight (now dense f32; biases are unchanged) and
    /// removes the adapters, as PEFT's merge_and_unload. The set is empty afterwards.
    /// </summary>
    public void MergeAndUnload()
    {
        foreach (LoraAdapter adapter in _adapters)
        {
            Linear module = adapter.Module;
            Context ctx = adapter.A.Context;
            module.ReplaceWeight(new DenseWeight(Tensor.FromArray(ctx, adapter.MergedWeight(), module.OutFeatures, module.InFeatures)));
            module.Detach();
            adapter.Dispose();
        }
        _adapters.Clear();
    }

    public void Dispose()
    {
        foreach (LoraAdapter adapter in _adapters)
        {
            adapter.Module.Detach();
            adapter.Dispose();
        }
        _adapters.Clear();
    }

    private static List<Linear> Targets(IReadOnlyList<Linear> modules, LoraConfig config)
    {
        HashSet<string> selected = config.TargetModules.Select(modules.Select(m => m.Name).ToList(), config.Source).ToHashSet();
        return modules.Where(m => selected.Contains(m.Name)).ToList();
    }

    private static (int Rank, float Scaling) RankAndScaling(LoraConfig config, Linear module)
    {
        (int rank, double alpha) = config.RankAndAlpha(module.Name);
        return (rank, (float)config.Scaling(rank, alpha));
    }

    private void Attach(Linear module, int rank, float scaling, double dropout, Tensor a, Tensor b, Tensor? magnitude)
    {
        foreach (Tensor t in new[] { a, b, magnitude }.OfType<Tensor>())
        {
            t.RequiresGrad = true;
        }
        var adapter = new LoraAdapter(this, module, rank, scaling, dropout, a, b, magnitude);
        try
        {
            module.Attach(adapter);
        }
        catch
        {
            adapter.Dispose();
            throw;
        }
        _adapters.Add(adapter);
    }

    private static float[] Uniform(Random random, long count, double bound)
    {
        var values = new float[count];
        for (long i = 0; i < count; i++)
        {
            values[i] = (float)((2 * random.NextDouble() - 1) * bound);
        }
        return values;
    }

    private static float[] Normal(Random random, long count, double std)
    {
        var values = new float[count];
        for (long i = 0; i < count; i++)
        {
            // Box–Muller: one normal sample from two uniforms.
            double u1 = 1.0 - random.NextDouble(), u2 = random.NextDouble();
            values[i] = (float)(std * Math.Sqrt(-2 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2));
        }
        return values;
    }
}
