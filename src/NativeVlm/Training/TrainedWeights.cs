using NativeVlm.Adapters;
using NativeVlm.IO;
using NativeVlm.Models;
using NativeVlm.Tensors;

namespace NativeVlm.Training;

/// <summary>
/// What a run trains and how it is written: LoRA/DoRA adapters (PEFT's adapter_config.json +
/// adapter_model.safetensors) or whole modules of the model (model.safetensors under transformers'
/// names: everything else stays frozen). Every tensor is f32 and requires grad.
/// </summary>
public sealed class TrainedWeights
{
    private readonly Action<string> _save;

    private TrainedWeights(IReadOnlyList<(string Key, Tensor Tensor)> parameters, string weightsFile,
        IReadOnlyList<string> files, Action<string> save, LoraAdapterSet? adapters)
    {
        NamedParameters = parameters;
        WeightsFile = weightsFile;
        Files = files;
        _save = save;
        Adapters = adapters;
    }

    /// <summary>Trainable tensors under their file keys, in file order (the optimizer's order).</summary>
    public IReadOnlyList<(string Key, Tensor Tensor)> NamedParameters { get; }

    public IEnumerable<Tensor> Parameters => NamedParameters.Select(p => p.Tensor);

    /// <summary>The safetensors file that holds the weights.</summary>
    public string WeightsFile { get; }

    /// <summary>Every file <see cref="Save"/> writes.</summary>
    public IReadOnlyList<string> Files { get; }

    /// <summary>The adapters, when adapters are trained (their dropout generator is part of a checkpoint).</summary>
    public LoraAdapterSet? Adapters { get; }

    public static TrainedWeights FromAdapters(LoraAdapterSet adapters) => new(
        adapters.NamedParameters.ToList(), LoraAdapterSet.WeightsFileName,
        [LoraConfig.FileName, LoraAdapterSet.WeightsFileName], adapters.Save, adapters);

    /// <summary>
    /// Full training of <paramref name="modules"/> (names from <see cref="TrainingArguments.TrainableModules"/>):
    /// their weights are marked trainable; they must be dense f32 (not NF4).
    /// </summary>
    public static TrainedWeights FromModules(Idefics3Model model, IReadOnlyList<string> modules)
    {
        var parameters = new List<(string, Tensor)>();
        foreach (string module in modules)
        {
            IEnumerable<(string Name, Tensor Tensor)> named = module switch
            {
                "connector" => model.Connector.NamedParameters.Select(p => ($"model.connector.{p.Name}", p.Tensor)),
                _ => throw new ArgumentException($"train_modules: '{module}' is not one of {string.Join(", ", TrainingArguments.TrainableModules)}"),
            };
            parameters.AddRange(named);
        }
        if (parameters.Count == 0)
        {
            throw new ArgumentException($"train_modules {string.Join(",", modules)}: these modules have no dense f32 weights to train (quantised?)");
        }
        foreach ((string key, Tensor tensor) in parameters)
        {
            if (tensor.DType != DType.F32)
            {
                throw new ArgumentException($"train_modules: {key} is {tensor.DType}; full training needs f32 weights");
            }
            tensor.RequiresGrad = true;
        }
        return new TrainedWeights(parameters, SafeTensorsReader.SingleFileName, [SafeTensorsReader.SingleFileName], directory =>
        {
            Directory.CreateDirectory(directory);
            var writer = new SafeTensorsWriter();
            foreach ((string key, Tensor tensor) in parameters)
            {
                writer.Add(key, tensor);
            }
            writer.Save(Path.Combine(directory, SafeTensorsReader.SingleFileName));
        }, null);
    }

    /// <summary>Writes the weights (and, for adapters, adapter_config.json) into <paramref name="directory"/>.</summary>
    public void Save(string directory) => _save(directory);

    /// <summary>Overwrites the live tensors with the values of <paramref name="directory"/>'s weights file (every key, same shapes).</summary>
    public void Restore(string directory)
    {
        string path = Path.Combine(directory, WeightsFile);
        using SafeTensorsReader reader = SafeTensorsReader.Open(path);
        reader.RequireNames(NamedParameters.Select(p => p.Key));
        foreach ((string key, Tensor tensor) in NamedParameters)
        {
            long[] shape = reader.GetInfo(key).Shape.ToArray();
            if (!shape.SequenceEqual(tensor.Shape.ToArray()))
            {
                throw new InvalidDataException($"{path}: {key} has shape [{string.Join(", ", shape)}], the model's is [{string.Join(", ", tensor.Shape.ToArray())}]");
            }
            TensorUpload.Upload(tensor, reader.ReadFloat32(key));
        }
    }
}
